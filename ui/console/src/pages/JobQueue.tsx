// Job Queue Entries and My Job Queue (Remove from Job Queue, Set Status to Ready, Show Error), Documents to
// handle (Retry), Job Queue Log Entries (each attempt links to the DAG run and task log that ran it): the posting
// side of the job queue.
import { Box, Button, Heading, HStack, Stack, Table, Text } from "@chakra-ui/react";
import { useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";

import { type ActionResult, del, get, post } from "../api";
import {
  type Column,
  ConfirmButton,
  ConsoleLink,
  DagRunLink,
  DataTable,
  formatTime,
  type Message,
  Notice,
  Select,
  StatusBadge,
  TextFilter,
  useAction,
  useList,
} from "../components";

export type Entry = {
  id: string;
  entry_no?: number;
  category_code: string;
  document_type: string;
  document_number: string;
  description: string;
  status: string;
  job_queue_status: string;
  user_id: string;
  priority: number;
  attempts: number;
  max_attempts: number;
  earliest_start_at: string;
  error_message: string | null;
  created_at: string | null;
};

type LogEntry = {
  entry_no: number;
  job_queue_entry_id: string;
  category_code: string;
  document_type: string;
  document_number: string;
  user_id: string;
  description: string;
  status: string;
  started_at: string;
  ended_at: string | null;
  error_message: string | null;
  error_detail: string | null;
  worker: string | null;
  dag_id: string | null;
  run_id: string | null;
  task_id: string | null;
  map_index: number | null;
  try_number: number | null;
};

/** The attempt's DAG run and the log of its task instance (this try) in the Airflow UI; blank for the CLI. */
const AttemptRun = ({ log }: { log: LogEntry }) =>
  log.dag_id && log.run_id ? (
    <HStack gap={2} data-testid="attempt-run">
      <DagRunLink dagId={log.dag_id} runId={log.run_id} />
      {log.task_id ? (
        <DagRunLink dagId={log.dag_id} runId={log.run_id} taskId={log.task_id} mapIndex={log.map_index} tryNumber={log.try_number} />
      ) : null}
    </HStack>
  ) : null;

type Category = { code: string; description: string | null };

const ENTRY_STATUSES = ["Ready", "Waiting", "In Process", "Error", "On Hold"];

export function useCategories(): [string, string][] {
  const [categories, setCategories] = useState<Category[]>([]);
  useEffect(() => {
    get<Category[]>("/job-queue-categories").then(setCategories, () => setCategories([]));
  }, []);
  return [["", "All"], ...categories.map((c): [string, string] => [c.code, `${c.code} ${c.description ?? ""}`])];
}

function ShowError({ entryId, onClose }: { entryId: string; onClose: () => void }) {
  const [detail, setDetail] = useState<{ entry: Entry; log_entries: LogEntry[] }>();
  useEffect(() => {
    get<{ entry: Entry; log_entries: LogEntry[] }>(`/job-queue-entries/${entryId}`).then(setDetail);
  }, [entryId]);
  if (!detail) return null;
  return (
    <Box borderWidth="1px" borderRadius="md" p={4} mb={4} bg="bg.panel" data-testid="show-error">
      <HStack justify="space-between">
        <Heading size="md">
          Show Error: {detail.entry.document_type} {detail.entry.document_number}
        </Heading>
        <Button size="xs" variant="ghost" onClick={onClose}>
          Close
        </Button>
      </HStack>
      <Text id="error-message" color="fg.error" my={2}>
        {detail.entry.error_message ?? "No error."}
      </Text>
      <Table.Root size="sm" id="log-entries">
        <Table.Header>
          <Table.Row>
            {["Entry No.", "Status", "Started", "Ended", "Error", "Detail", "DAG run"].map((h) => (
              <Table.ColumnHeader key={h}>{h}</Table.ColumnHeader>
            ))}
          </Table.Row>
        </Table.Header>
        <Table.Body>
          {detail.log_entries.map((log) => (
            <Table.Row key={log.entry_no}>
              <Table.Cell>{log.entry_no}</Table.Cell>
              <Table.Cell>
                <StatusBadge label={log.status} />
              </Table.Cell>
              <Table.Cell>{formatTime(log.started_at)}</Table.Cell>
              <Table.Cell>{formatTime(log.ended_at)}</Table.Cell>
              <Table.Cell>{log.error_message}</Table.Cell>
              <Table.Cell fontFamily="mono" fontSize="xs">
                {log.error_detail}
              </Table.Cell>
              <Table.Cell>
                <AttemptRun log={log} />
              </Table.Cell>
            </Table.Row>
          ))}
        </Table.Body>
      </Table.Root>
    </Box>
  );
}

export function JobQueuePage({ mine, canEdit }: { mine: boolean; canEdit: boolean }) {
  const [params] = useSearchParams();
  const [category, setCategory] = useState(params.get("category") ?? "");
  const [status, setStatus] = useState(params.get("status") ?? "");
  const [search, setSearch] = useState("");
  const [message, setMessage] = useState<Message>();
  const [shown, setShown] = useState<string>();
  const categories = useCategories();
  const list = useList<Entry>("/job-queue-entries", { category, status, search, mine }, "-created_at");
  const action = useAction(setMessage, list.reload);
  const columns: Column<Entry>[] = [
    { key: "no", label: "Entry No.", sort: "entry_no", render: (e) => e.entry_no ?? "" },
    { key: "doc", label: "Document", sort: "document_number", render: (e) => `${e.document_type} ${e.document_number}` },
    { key: "cat", label: "Category", sort: "category_code", render: (e) => e.category_code },
    { key: "status", label: "Status", sort: "status", render: (e) => <StatusBadge label={e.status} /> },
    { key: "user", label: "User", sort: "user_id", render: (e) => e.user_id },
    { key: "prio", label: "Priority", sort: "priority", render: (e) => e.priority },
    { key: "att", label: "Attempts", render: (e) => `${e.attempts} / ${e.max_attempts}` },
    { key: "start", label: "Earliest start", sort: "earliest_start_at", render: (e) => formatTime(e.earliest_start_at) },
    { key: "created", label: "Created", sort: "created_at", render: (e) => formatTime(e.created_at) },
    {
      key: "actions",
      label: "",
      render: (e) => (
        <HStack gap={1} wrap="wrap">
          <Button size="xs" variant="outline" onClick={() => setShown(e.id)}>
            Show Error
          </Button>
          <ConsoleLink page="job-queue-log" params={{ entry: e.id }}>
            Log
          </ConsoleLink>
          {canEdit ? (
            <>
              <Button
                size="xs"
                variant="outline"
                disabled={action.busy || !["Error", "On Hold"].includes(e.status)}
                onClick={() =>
                  action.run(async () => {
                    const entry = await post<Entry>(`/job-queue-entries/${e.id}/set-ready`);
                    return { message: `${entry.document_type} ${entry.document_number} is Ready and will be posted again.` };
                  })
                }
              >
                Set Status to Ready
              </Button>
              <ConfirmButton
                label="Remove from Job Queue"
                question="Remove it? Its Job Queue Status becomes blank."
                disabled={action.busy}
                onConfirm={() => action.run(() => del<ActionResult>(`/job-queue-entries/${e.id}`))}
              />
            </>
          ) : null}
        </HStack>
      ),
    },
  ];
  return (
    <Stack gap={3}>
      <Notice message={message} onClose={() => setMessage(undefined)} />
      {shown ? <ShowError entryId={shown} onClose={() => setShown(undefined)} /> : null}
      <HStack gap={4} align="end" wrap="wrap">
        <Select label="Category" name="category" value={category} onChange={setCategory} options={categories} />
        <Select
          label="Status"
          name="status"
          value={status}
          onChange={setStatus}
          options={[["", "All"], ...ENTRY_STATUSES.map((s): [string, string] => [s, s])]}
        />
        <TextFilter label="Document No. or description" name="search" value={search} onChange={setSearch} />
      </HStack>
      <DataTable
        id="job-queue-entries"
        list={list}
        columns={columns}
        rowKey={(e) => e.id}
        rowProps={(e) => ({ "data-entry-id": e.id })}
        empty={mine ? "You have no entries in the job queue." : "The job queue is empty."}
      />
    </Stack>
  );
}

type Document = {
  document_type: string;
  document_number: string;
  document_id: string;
  category_code: string;
  job_queue_entry_id: string;
  user_id: string;
  error_message: string | null;
  updated_at: string;
  attempts: number;
  max_attempts: number;
};

export function DocumentsPage({ canEdit }: { canEdit: boolean }) {
  const [category, setCategory] = useState("");
  const [search, setSearch] = useState("");
  const [message, setMessage] = useState<Message>();
  const categories = useCategories();
  const list = useList<Document>("/documents-to-handle", { category, search }, "-updated_at");
  const action = useAction(setMessage, list.reload);
  const columns: Column<Document>[] = [
    { key: "doc", label: "Document", sort: "document_number", render: (d) => `${d.document_type} ${d.document_number}` },
    { key: "cat", label: "Category", sort: "category_code", render: (d) => d.category_code },
    { key: "user", label: "User", sort: "user_id", render: (d) => d.user_id },
    { key: "error", label: "Reason", render: (d) => <Text color="fg.error">{d.error_message}</Text> },
    { key: "att", label: "Attempts", render: (d) => `${d.attempts} / ${d.max_attempts}` },
    { key: "updated", label: "Failed at", sort: "updated_at", render: (d) => formatTime(d.updated_at) },
    {
      key: "actions",
      label: "",
      render: (d) => (
        <HStack gap={1}>
          <ConsoleLink page="job-queue-log" params={{ entry: d.job_queue_entry_id }}>
            Log
          </ConsoleLink>
          {canEdit ? (
            <Button
              size="xs"
              variant="outline"
              disabled={action.busy}
              onClick={() =>
                action.run(async () => {
                  await post<Entry>(`/job-queue-entries/${d.job_queue_entry_id}/set-ready`);
                  return { message: `${d.document_type} ${d.document_number} is Ready and will be posted again.` };
                })
              }
            >
              Retry
            </Button>
          ) : null}
        </HStack>
      ),
    },
  ];
  return (
    <Stack gap={3}>
      <Notice message={message} onClose={() => setMessage(undefined)} />
      <HStack gap={4} align="end" wrap="wrap">
        <Select label="Category" name="category" value={category} onChange={setCategory} options={categories} />
        <TextFilter label="Document No. or reason" name="search" value={search} onChange={setSearch} />
      </HStack>
      <DataTable
        id="documents"
        list={list}
        columns={columns}
        rowKey={(d) => d.job_queue_entry_id}
        rowProps={(d) => ({ "data-entry-id": d.job_queue_entry_id })}
        empty="No document needs handling."
      />
    </Stack>
  );
}

export function LogPage() {
  const [params] = useSearchParams();
  const [category, setCategory] = useState(params.get("category") ?? "");
  const [status, setStatus] = useState("");
  const [userId, setUserId] = useState("");
  const [dateFrom, setDateFrom] = useState("");
  const [dateTo, setDateTo] = useState("");
  const [search, setSearch] = useState("");
  const entry = params.get("entry") ?? "";
  const runId = params.get("run_id") ?? "";
  const categories = useCategories();
  const list = useList<LogEntry>(
    "/job-queue-log-entries",
    { category, status, user_id: userId, date_from: dateFrom, date_to: dateTo, search, job_queue_entry_id: entry, run_id: runId },
    "-entry_no",
  );
  const columns: Column<LogEntry>[] = [
    { key: "no", label: "Entry No.", sort: "entry_no", render: (l) => l.entry_no },
    { key: "doc", label: "Document", sort: "document_number", render: (l) => `${l.document_type} ${l.document_number}` },
    { key: "status", label: "Status", sort: "status", render: (l) => <StatusBadge label={l.status} /> },
    { key: "cat", label: "Category", sort: "category_code", render: (l) => l.category_code },
    { key: "user", label: "User", sort: "user_id", render: (l) => l.user_id },
    { key: "start", label: "Started", sort: "started_at", render: (l) => formatTime(l.started_at) },
    { key: "end", label: "Ended", sort: "ended_at", render: (l) => formatTime(l.ended_at) },
    { key: "error", label: "Error", render: (l) => <Text color="fg.error">{l.error_message}</Text> },
    { key: "worker", label: "Worker", render: (l) => l.worker },
    { key: "run", label: "DAG run", render: (l) => <AttemptRun log={l} /> },
  ];
  return (
    <Stack gap={3}>
      {entry ? <Text color="fg.muted">Attempts of job queue entry {entry}</Text> : null}
      {runId ? <Text color="fg.muted">Attempts of DAG run {runId}</Text> : null}
      <HStack gap={4} align="end" wrap="wrap">
        <Select label="Category" name="category" value={category} onChange={setCategory} options={categories} />
        <Select
          label="Status"
          name="status"
          value={status}
          onChange={setStatus}
          options={[["", "All"], ["In Process", "In Process"], ["Success", "Success"], ["Error", "Error"]]}
        />
        <TextFilter label="User" name="user_id" value={userId} onChange={setUserId} />
        <TextFilter label="From (UTC day)" name="date_from" type="date" value={dateFrom} onChange={setDateFrom} />
        <TextFilter label="To (UTC day)" name="date_to" type="date" value={dateTo} onChange={setDateTo} />
        <TextFilter label="Document No. or error" name="search" value={search} onChange={setSearch} />
      </HStack>
      <DataTable
        id="log"
        list={list}
        columns={columns}
        rowKey={(l) => String(l.entry_no)}
        rowProps={(l) => ({ "data-entry-no": String(l.entry_no) })}
        empty="No log entries match."
      />
    </Stack>
  );
}
