"""Dataverse activity tables for mailbox synchronization: ``emails``, ``tasks``, ``appointments``,
``activityparties`` and ``activitymimeattachments`` (logical names as in MicrosoftDocs/powerapps-docs, "email",
"task", "appointment", "activityparty", "activitymimeattachment").

``activitymimeattachments`` follows the Web API reference of the activitymimeattachment EntityType
(https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/activitymimeattachment):
``body`` holds the file as Base64 text, ``filename``, ``mimetype``, ``attachmentnumber``, ``objecttypecode`` (the
logical name of the activity, ``email``) and the ``objectid`` lookup written with ``objectid_email@odata.bind``
(or ``objectid_appointment``). Sandbox simplification: the read-only ``filesize`` is not computed.

Importing this module adds the five sets to :data:`sandbox.schema.DATAVERSE_SETS`, so the generic Dataverse
routes serve them with the usual contract (paging, ``$filter``, upsert with ``If-None-Match``, ``$batch``
change sets, change tracking).

Sandbox simplification: the real Web API creates activity parties through the activity's collection
property (``email_activity_parties`` in a deep insert); here they are rows of ``activityparties`` written on
their own (the client sends them in the same atomic change set as the email).
"""

from __future__ import annotations

from sandbox.schema import DATAVERSE_SETS, DN, DS, EntitySet, Field, Lookup, _dv

_OWNER = Lookup("ownerid", {"ownerid": "systemusers"})


def _regarding(type_name: str) -> Lookup:
    """The regarding lookup of an activity table: one single-valued navigation property per target and
    activity type, e.g. ``regardingobjectid_account_email`` (Web API EntityType reference "email";
    ``regardingobjectid_account_task`` in "Execute batch operations using the Web API")."""
    return Lookup(
        "regardingobjectid",
        {f"regardingobjectid_account_{type_name}": "accounts", f"regardingobjectid_contact_{type_name}": "contacts"},
    )


def _activity(name: str, type_name: str, *specs: Field, subject_length: int = 400) -> EntitySet:
    return _dv(
        name,
        type_name,
        "activityid",
        None,
        DS("subject", subject_length),
        DS("description", 1_048_576),
        *specs,
        lookups=(_OWNER, _regarding(type_name)),
    )


ACTIVITY_SETS: dict[str, EntitySet] = {
    s.name: s
    for s in (
        # statecode 0 Open / 1 Completed / 2 Canceled; statuscode 1 Draft, 2 Completed, 3 Sent, 4 Received,
        # 6 Pending Send, 7 Sending, 8 Failed (email entity reference)
        _activity(
            "emails",
            "email",
            DS("sender", 250),
            DS("torecipients", 500),
            DS("ccrecipients", 500),
            DS("messageid", 320),
            DS("inreplyto", 320),
            DS("trackingtoken", 50),
            DN("directioncode", "bool", False),
            DN("statecode", "int", 0),
            DN("statuscode", "int", 1),
            Field("senton", "datetime", default=None),
            Field("actualend", "datetime", default=None),
        ),
        _activity(
            "tasks",
            "task",
            Field("scheduledend", "datetime", default=None),
            DN("prioritycode", "int", 1),
            DN("percentcomplete", "int", 0),
            DN("statecode", "int", 0),
            DN("statuscode", "int", 2),
            # task.subject is 200 long (the length error in "Execute batch operations using the Web API")
            subject_length=200,
        ),
        _activity(
            "appointments",
            "appointment",
            DS("location", 200),
            Field("scheduledstart", "datetime", default=None),
            Field("scheduledend", "datetime", default=None),
            DN("isalldayevent", "bool", False),
            DN("statecode", "int", 0),
            DN("statuscode", "int", 1),
        ),
        _dv(
            "activitymimeattachments",
            "activitymimeattachment",
            "activitymimeattachmentid",
            None,
            DS("filename", 255),
            DS("mimetype", 256),
            DS("subject", 2000),
            DS("body"),
            DN("attachmentnumber", "int", None),
            DS("objecttypecode", 64),
            DS("attachmentcontentid", 256),
            lookups=(Lookup("objectid", {"objectid_email": "emails", "objectid_appointment": "appointments"}),),
        ),
        _dv(
            "activityparties",
            "activityparty",
            "activitypartyid",
            None,
            # 1 Sender, 2 To, 3 Cc, 5 Required attendee, 9 Owner (activityparty entity reference)
            DN("participationtypemask", "int", 1),
            DS("addressused", 320),
            lookups=(
                Lookup(
                    "activityid",
                    {
                        "activityid_email": "emails",
                        "activityid_task": "tasks",
                        "activityid_appointment": "appointments",
                    },
                ),
                Lookup(
                    "partyid",
                    {"partyid_contact": "contacts", "partyid_account": "accounts", "partyid_systemuser": "systemusers"},
                ),
            ),
        ),
    )
}

DATAVERSE_SETS.update(ACTIVITY_SETS)
