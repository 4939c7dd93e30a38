"""Business Central webhooks: the subscriptions this deployment holds (:mod:`.subscriptions`) and the receiver of
their notifications in the api-server (:mod:`.receiver`), which records Airflow asset events."""
