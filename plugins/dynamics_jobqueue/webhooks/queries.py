"""SQL of the webhook receivers and registrations (tables of migrations 0017 and 0025).

Every statement takes its values as psycopg parameters; nothing received is formatted into the SQL text.
"""

from __future__ import annotations

# -- Business Central subscriptions (0017) ---------------------------------------------------------------------
BC_SUBSCRIPTIONS = (
    "SELECT subscription_id, entity_set, client_state_sha256, expires_at FROM dynamics.bc_webhook_subscriptions"
)
BC_RENEWED = (
    "UPDATE dynamics.bc_webhook_subscriptions SET expires_at = %s, etag = %s, renewed_at = now()"
    " WHERE subscription_id = %s"
)
BC_FORGET_ENTITY_SET = "DELETE FROM dynamics.bc_webhook_subscriptions WHERE entity_set = %s"
BC_INSERT_SUBSCRIPTION = (
    "INSERT INTO dynamics.bc_webhook_subscriptions (subscription_id, entity_set, resource, notification_url,"
    " client_state_sha256, expires_at, etag) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
BC_FORGET_SUBSCRIPTION = "DELETE FROM dynamics.bc_webhook_subscriptions WHERE subscription_id = %s"
#: Entity sets Business Central refused a subscription to (kept in ``dynamics.settings`` under
#: ``bc_webhook_refused:<entity set>``, value ``{"reason": ...}``): ``(entity set, reason, refused at)``.
BC_REFUSED = (
    "SELECT substr(key, length('bc_webhook_refused:') + 1), value->>'reason', updated_at FROM dynamics.settings"
    " WHERE starts_with(key, 'bc_webhook_refused:')"
)
BC_REMEMBER_REFUSED = (
    "INSERT INTO dynamics.settings (key, value)"
    " VALUES ('bc_webhook_refused:' || %s, jsonb_build_object('reason', %s::text))"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
)
BC_FORGET_REFUSED = "DELETE FROM dynamics.settings WHERE key = 'bc_webhook_refused:' || %s"
#: The notifications of a POST already accepted: parameters are four text arrays (one per key column).
BC_SEEN_NOTIFICATIONS = (
    "SELECT subscription_id, resource, change_type, last_modified FROM dynamics.bc_webhook_notifications"
    " WHERE (subscription_id, resource, change_type, last_modified) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]))"
)
BC_REMEMBER_NOTIFICATION = (
    "INSERT INTO dynamics.bc_webhook_notifications (subscription_id, resource, change_type, last_modified)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
BC_FORGET_OLD_NOTIFICATIONS = (
    "DELETE FROM dynamics.bc_webhook_notifications WHERE received_at < now() - make_interval(days => %s)"
)

# -- Dataverse webhook (0025) -----------------------------------------------------------------------------------
DV_ENDPOINTS = (
    "SELECT serviceendpoint_id::text, name, url, header_name, secret_sha256 FROM dynamics.dataverse_webhook_endpoints"
)
DV_SAVE_ENDPOINT = (
    "INSERT INTO dynamics.dataverse_webhook_endpoints (serviceendpoint_id, name, url, header_name, secret_sha256)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (serviceendpoint_id) DO UPDATE SET name = EXCLUDED.name,"
    " url = EXCLUDED.url, header_name = EXCLUDED.header_name, secret_sha256 = EXCLUDED.secret_sha256,"
    " rotated_at = now()"
)
DV_FORGET_ENDPOINT_NAMED = "DELETE FROM dynamics.dataverse_webhook_endpoints WHERE name = %s"
DV_FORGET_ENDPOINTS = "DELETE FROM dynamics.dataverse_webhook_endpoints"
DV_STEPS = (
    "SELECT step_id::text, serviceendpoint_id::text, logical_name, entity_set, message"
    " FROM dynamics.dataverse_webhook_steps"
)
DV_FORGET_STEPS = "DELETE FROM dynamics.dataverse_webhook_steps WHERE serviceendpoint_id = %s"
DV_SAVE_STEP = (
    "INSERT INTO dynamics.dataverse_webhook_steps (step_id, serviceendpoint_id, logical_name, entity_set, message)"
    " VALUES (%s, %s, %s, %s, %s)"
)
#: The entity set of a table the registered steps watch, by logical name (``account`` -> ``accounts``).
DV_ENTITY_SET_OF = "SELECT entity_set FROM dynamics.dataverse_webhook_steps WHERE logical_name = %s LIMIT 1"
DV_SEEN_DELIVERY = "SELECT 1 FROM dynamics.dataverse_webhook_deliveries WHERE operation_id = %s"
DV_REMEMBER_DELIVERY = (
    "INSERT INTO dynamics.dataverse_webhook_deliveries (operation_id, logical_name, message) VALUES (%s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)
DV_FORGET_OLD_DELIVERIES = (
    "DELETE FROM dynamics.dataverse_webhook_deliveries WHERE received_at < now() - make_interval(days => %s)"
)
