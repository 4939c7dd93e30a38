// Mailboxes: each workload's status, last error and its fix; Test & Enable (a mailbox_sync DAG run, linked), Sync
// now, Remap to a CRM user picked from Dataverse (a remap that breaks a mapping is requested and approved as an
// Airflow required action: the latest request shows with who asked and who decided), and the messages handled.
import { Box, Button, Heading, HStack, Input, Stack, Table, Text } from "@chakra-ui/react";
import { Link as RouterLink } from "react-router-dom";
import { useCallback, useEffect, useState } from "react";

import { type ActionResult, ApiError, type DagRunTriggered, get, post } from "../api";
import {
  type Column,
  DataTable,
  formatTime,
  type Message,
  Notice,
  runPath,
  taskPath,
  Select,
  StatusBadge,
  useAction,
  useList,
} from "../components";

type Workload = {
  workload: string;
  workload_label: string;
  status_label: string;
  last_error_message: string | null;
  last_error_fix: string | null;
  last_success_at: string | null;
  next_sync_at: string;
  items_processed: number;
  items_failed: number;
};
type RemapRequest = {
  request_id: number;
  crm_user_id: string;
  reason: string;
  requested_by: string;
  requested_at: string;
  status: "pending" | "approved" | "rejected";
  decided_by: string | null;
  decided_at: string | null;
  dag_id: string;
  dag_run_id: string | null;
  task_id: string;
};
type Mailbox = {
  mailbox_id: number;
  name: string;
  email_address: string;
  crm_user_id: string | null;
  server_type: string;
  workloads: Workload[];
  remap_request: RemapRequest | null;
};

const REQUEST_STATUS = { pending: "Pending approval", approved: "Approved", rejected: "Rejected" } as const;

/** The mailbox's latest remap that breaks a mapping: who asked and when, and either the required action that
 * waits for the answer (Airflow's Required Actions tab of the approval task) or who approved/rejected it. */
function RemapRequestInfo({ request }: { request: RemapRequest }) {
  return (
    <Box data-testid="remap-request" data-request-status={request.status} borderWidth="1px" borderRadius="md" p={2} mt={3}>
      <HStack gap={2} wrap="wrap">
        <StatusBadge label={REQUEST_STATUS[request.status]} />
        <Text fontSize="sm">
          Remap to CRM user {request.crm_user_id}, requested by <b>{request.requested_by}</b> on {formatTime(request.requested_at)}
        </Text>
      </HStack>
      <Text fontSize="sm" color="fg.muted" mt={1}>
        It breaks a mapping: {request.reason}
      </Text>
      {request.status === "pending" ? (
        <Text fontSize="sm" mt={1}>
          Waiting for approval in Airflow&apos;s Required Actions
          {request.dag_run_id ? (
            <>
              {": "}
              <RouterLink
                to={`${taskPath(request.dag_id, request.dag_run_id, request.task_id)}/required_actions`}
                style={{ textDecoration: "underline" }}
                data-testid="required-action-link"
              >
                approve or reject it
              </RouterLink>
            </>
          ) : null}
          .
        </Text>
      ) : (
        <Text fontSize="sm" mt={1} data-testid="remap-decision">
          {request.status === "approved" ? "Approved (the remap is applied)" : "Rejected (nothing changed)"} by{" "}
          <b>{request.decided_by}</b> on {formatTime(request.decided_at)}.
        </Text>
      )}
    </Box>
  );
}
type CrmUser = { systemuserid: string; fullname: string | null; internalemailaddress: string | null };
type MailMessage = {
  mailbox_id: number;
  message_id: string;
  outcome_label: string;
  reason: string | null;
  subject: string | null;
  folder: string | null;
  processed_at: string;
};

function Remap({ mailbox, onDone, setMessage }: { mailbox: Mailbox; onDone: () => void; setMessage: (m: Message) => void }) {
  const [search, setSearch] = useState("");
  const [users, setUsers] = useState<CrmUser[]>([]);
  const [picked, setPicked] = useState("");
  const [conflict, setConflict] = useState<string>();
  const action = useAction(setMessage, onDone);
  useEffect(() => {
    const timer = setTimeout(
      () => get<CrmUser[]>("/crm-users", { search, limit: 20 }).then(setUsers, () => setUsers([])),
      250,
    );
    return () => clearTimeout(timer);
  }, [search]);
  const remap = (confirm: boolean) =>
    action.run(async () => {
      try {
        const result = await post<ActionResult>(`/mailboxes/${mailbox.mailbox_id}/remap`, { crm_user_id: picked, confirm });
        setConflict(undefined);
        return result;
      } catch (error) {
        if (error instanceof ApiError && error.status === 409) {
          setConflict(error.message);
          return { kind: "error", text: "Remapping breaks a mapping: request its approval below." } as Message;
        }
        throw error;
      }
    });
  return (
    <Stack gap={2} data-testid="remap">
      <HStack gap={2} align="end" wrap="wrap">
        <Input size="sm" width="220px" placeholder="Find a CRM user" name="crm-user-search" value={search} onChange={(e) => setSearch(e.currentTarget.value)} />
        <Select
          label="CRM user"
          name="crm_user_id"
          value={picked}
          onChange={setPicked}
          options={[["", "Choose a CRM user"], ...users.map((u): [string, string] => [u.systemuserid, `${u.fullname ?? ""} <${u.internalemailaddress ?? ""}>`])]}
        />
        <Button size="sm" variant="outline" disabled={!picked || action.busy} onClick={() => remap(false)}>
          Remap
        </Button>
      </HStack>
      {conflict ? (
        <Box id="remap-conflict" borderWidth="1px" borderRadius="md" p={2} bg="bg.warning">
          <Text>{conflict}</Text>
          <Text fontSize="sm" mt={1}>
            Breaking a mapping needs approval: the request waits in Airflow&apos;s Required Actions, and the remap is
            applied only when it is approved.
          </Text>
          <HStack mt={2}>
            <Button size="xs" colorPalette="orange" id="confirm-remap" onClick={() => remap(true)}>
              Request approval
            </Button>
            <Button size="xs" variant="ghost" onClick={() => setConflict(undefined)}>
              Cancel
            </Button>
          </HStack>
        </Box>
      ) : null}
    </Stack>
  );
}

export function MailboxesPage({ canEdit }: { canEdit: boolean }) {
  const [boxes, setBoxes] = useState<Mailbox[]>([]);
  const [message, setMessage] = useState<Message>();
  const [outcome, setOutcome] = useState("");
  const load = useCallback(() => {
    get<Mailbox[]>("/mailboxes").then(setBoxes, (e: Error) => setMessage({ kind: "error", text: e.message }));
  }, []);
  useEffect(load, [load]);
  const messages = useList<MailMessage>("/mailbox-messages", { outcome }, "-processed_at", 25);
  const action = useAction(setMessage, () => {
    load();
    messages.reload();
  });
  const byId = new Map(boxes.map((b) => [b.mailbox_id, b.email_address]));
  const messageColumns: Column<MailMessage>[] = [
    { key: "at", label: "Processed", sort: "processed_at", render: (m) => formatTime(m.processed_at) },
    { key: "mailbox", label: "Mailbox", render: (m) => byId.get(m.mailbox_id) ?? m.mailbox_id },
    { key: "subject", label: "Subject", sort: "subject", render: (m) => <Text className="subject">{m.subject}</Text> },
    { key: "outcome", label: "Outcome", sort: "outcome", render: (m) => <StatusBadge label={m.outcome_label} /> },
    { key: "reason", label: "Reason", render: (m) => m.reason },
    { key: "folder", label: "Folder", sort: "folder", render: (m) => m.folder },
  ];
  return (
    <Stack gap={4}>
      <Notice message={message} onClose={() => setMessage(undefined)} />
      {boxes.map((box) => (
        <Box key={box.mailbox_id} id={`mailbox-${box.mailbox_id}`} borderWidth="1px" borderRadius="md" p={4} bg="bg.panel">
          <HStack justify="space-between" wrap="wrap">
            <Heading size="md">
              {box.name} &lt;{box.email_address}&gt;
            </Heading>
            <Text color="fg.muted" fontSize="sm">
              {box.server_type} · CRM user {box.crm_user_id ?? "none"}
            </Text>
          </HStack>
          <Table.Root size="sm" mt={2}>
            <Table.Header>
              <Table.Row>
                {["Workload", "Status", "Last error", "Fix", "Last success", "Next sync", "Processed", "Failed"].map((h) => (
                  <Table.ColumnHeader key={h}>{h}</Table.ColumnHeader>
                ))}
              </Table.Row>
            </Table.Header>
            <Table.Body>
              {box.workloads.map((w) => (
                <Table.Row key={w.workload}>
                  <Table.Cell>{w.workload_label}</Table.Cell>
                  <Table.Cell>
                    <StatusBadge label={w.status_label} />
                  </Table.Cell>
                  <Table.Cell color="fg.error">{w.last_error_message}</Table.Cell>
                  <Table.Cell>{w.last_error_fix}</Table.Cell>
                  <Table.Cell>{formatTime(w.last_success_at)}</Table.Cell>
                  <Table.Cell>{formatTime(w.next_sync_at)}</Table.Cell>
                  <Table.Cell>{w.items_processed}</Table.Cell>
                  <Table.Cell>{w.items_failed}</Table.Cell>
                </Table.Row>
              ))}
            </Table.Body>
          </Table.Root>
          {box.remap_request ? <RemapRequestInfo request={box.remap_request} /> : null}
          {canEdit ? (
            <Stack mt={3} gap={2}>
              <HStack>
                <Button
                  size="sm"
                  variant="outline"
                  disabled={action.busy}
                  onClick={() =>
                    action.run(async () => {
                      const run = await post<DagRunTriggered>(`/mailboxes/${box.mailbox_id}/test-and-enable`);
                      return { kind: "notice", text: run.message, link: { to: runPath(run.dag_id, run.dag_run_id), label: "Open the DAG run" } } as Message;
                    })
                  }
                >
                  Test &amp; Enable
                </Button>
                <Button
                  size="sm"
                  variant="outline"
                  disabled={action.busy}
                  onClick={() => action.run(() => post<ActionResult>(`/mailboxes/${box.mailbox_id}/sync-now`))}
                >
                  Sync now
                </Button>
              </HStack>
              <Remap mailbox={box} onDone={load} setMessage={setMessage} />
            </Stack>
          ) : null}
        </Box>
      ))}
      <Heading size="md">Messages handled</Heading>
      <Select
        label="Outcome"
        name="outcome"
        value={outcome}
        onChange={setOutcome}
        options={[["", "All"], ["tracked", "Tracked"], ["filtered", "Filtered out"], ["quarantined", "Quarantined"]]}
      />
      <DataTable id="mailbox-messages" list={messages} columns={messageColumns} rowKey={(m) => `${m.mailbox_id}/${m.message_id}`} empty="No messages yet." />
    </Stack>
  );
}
