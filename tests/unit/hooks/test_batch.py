"""Dataverse multipart $batch bodies: what we send parses as the Web API docs show, answers decode per part."""

from __future__ import annotations

import email
import email.policy

from dynamics_jobqueue.hooks.batch import BatchOperation, BatchResult, decode_multipart, encode_multipart

ROOT = "https://org.crm.dynamics.com/api/data/v9.2/"


def test_encoded_batch_is_valid_multipart_with_one_http_request_per_part() -> None:
    ops = [
        BatchOperation("a", "PATCH", "accounts(accountnumber='10000')", {"name": "Adatum"}),
        BatchOperation("b", "DELETE", "accounts(0f3a9f8e-0000-4000-8000-000000000001)", None, {"If-Match": "*"}),
    ]
    content_type, body = encode_multipart(ops, ROOT, atomic=False)
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    parts = list(message.iter_parts())
    assert len(parts) == 2
    first = parts[0].get_payload()
    assert first.startswith(f"PATCH {ROOT}accounts(accountnumber='10000') HTTP/1.1")
    assert '{"name": "Adatum"}' in first
    assert "If-Match: *" in parts[1].get_payload()


def test_atomic_batch_nests_a_change_set_with_content_ids() -> None:
    ops = [BatchOperation(str(n), "PATCH", f"accounts(accountnumber='{n}')", {"name": str(n)}) for n in range(3)]
    content_type, body = encode_multipart(ops, ROOT, atomic=True)
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    (changeset,) = list(message.iter_parts())
    assert changeset.get_content_type() == "multipart/mixed"
    assert [p["Content-ID"] for p in changeset.iter_parts()] == ["1", "2", "3"]


def test_answer_parts_decode_in_order_with_nested_change_sets() -> None:
    answer = (
        b"--batchresponse_1\r\n"
        b"Content-Type: multipart/mixed; boundary=changesetresponse_9\r\n\r\n"
        b"--changesetresponse_9\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n"
        b"OData-EntityId: https://org/api/data/v9.2/accounts(0F3A9F8E-0000-4000-8000-000000000001)\r\n\r\n\r\n"
        b"--changesetresponse_9--\r\n"
        b"--batchresponse_1\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n"
        b'{"error":{"code":"0x80040217","message":"account With Id = 1 Does Not Exist"}}\r\n'
        b"--batchresponse_1--\r\n"
    )
    parts = decode_multipart("multipart/mixed; boundary=batchresponse_1", answer)
    assert [p.status for p in parts] == [204, 404]
    assert parts[0].content_id == "1"
    created = BatchResult("a", parts[0].status, parts[0].body, parts[0].headers)
    assert created.ok and created.record_id == "0f3a9f8e-0000-4000-8000-000000000001"
    failed = BatchResult("b", parts[1].status, parts[1].body, parts[1].headers)
    assert failed.error is not None
    assert failed.error.code == "0x80040217"
    assert "Does Not Exist" in str(failed.error)


def test_alternate_key_values_are_percent_encoded_where_a_url_needs_it() -> None:
    """A unit group "NAV PCS" addressed by its name: the space would end the URL in a $batch part's request line."""
    from dynamics_jobqueue.hooks.microsoft import record_path

    assert record_path("uomschedules", {"name": "NAV PCS"}) == "uomschedules(name='NAV%20PCS')"
    assert record_path("contacts", {"emailaddress1": "b@x"}) == "contacts(emailaddress1='b@x')"
    assert record_path("accounts", {"accountnumber": "A/1#?"}) == "accounts(accountnumber='A%2F1%23%3F')"
    assert record_path("accounts", {"name": "O'Neil"}) == "accounts(name='O''Neil')"
