// Building blocks of the console's pages, made of the Airflow UI's own Chakra UI components (its theme, light and
// dark): a server-paged, sortable table with "N-M of T", notices, inline confirmations, links to DAG runs.
import { Badge, Box, Button, HStack, Input, NativeSelect, Spinner, Table, Text } from "@chakra-ui/react";
import { type ReactNode, useCallback, useEffect, useState } from "react";
import { Link as RouterLink } from "react-router-dom";

import { ApiError, get, type Page, type Params } from "./api";

export const formatTime = (value?: string | null): string =>
  value ? new Date(value).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";

export const formatNumber = (value: number): string => value.toLocaleString("en-US");

/** A list of the API with its paging, sorting and filters; ``reload`` after an action. */
export function useList<T>(path: string, filters: Params, initialSort = "", initialLimit = 50) {
  const [offset, setOffset] = useState(0);
  const [limit, setLimit] = useState(initialLimit);
  const [sort, setSort] = useState(initialSort);
  const [page, setPage] = useState<Page<T>>();
  const [error, setError] = useState<string>();
  const [loading, setLoading] = useState(true);
  const [version, setVersion] = useState(0);
  const key = JSON.stringify(filters);
  useEffect(() => setOffset(0), [key, limit, sort]);
  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    get<Page<T>>(path, { ...filters, offset, limit, sort })
      .then((result) => {
        if (cancelled) return;
        setPage(result);
        setError(undefined);
      })
      .catch((e: Error) => !cancelled && setError(e.message))
      .finally(() => !cancelled && setLoading(false));
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, key, offset, limit, sort, version]);
  const reload = useCallback(() => setVersion((v) => v + 1), []);
  return { page, error, loading, offset, setOffset, limit, setLimit, sort, setSort, reload };
}

export type Column<T> = {
  key: string;
  label: string;
  sort?: string;
  render: (row: T) => ReactNode;
};

/** A server-paged table: sortable column headers, "51–100 of 10,000", previous/next and rows per page. */
export function DataTable<T>({
  id,
  list,
  columns,
  rowKey,
  rowProps,
  empty,
}: {
  id: string;
  list: ReturnType<typeof useList<T>>;
  columns: Column<T>[];
  rowKey: (row: T) => string;
  rowProps?: (row: T) => Record<string, string>;
  empty: string;
}) {
  const { page, error, loading, offset, setOffset, limit, setLimit, sort, setSort } = list;
  const total = page?.total ?? 0;
  const rows = page?.items ?? [];
  const toggle = (name: string) => setSort(sort === name ? `-${name}` : name);
  const arrow = (name?: string) => (!name ? "" : sort === name ? " ▲" : sort === `-${name}` ? " ▼" : "");
  return (
    <Box id={id} data-testid={id} borderWidth="1px" borderRadius="md" bg="bg.panel" overflowX="auto">
      {error ? (
        <Text color="fg.error" p={3} data-testid="list-error">
          {error}
        </Text>
      ) : null}
      <Table.Root size="sm" striped>
        <Table.Header>
          <Table.Row>
            {columns.map((column) => (
              <Table.ColumnHeader
                key={column.key}
                cursor={column.sort ? "pointer" : undefined}
                onClick={column.sort ? () => toggle(column.sort!) : undefined}
                data-sort={column.sort}
                whiteSpace="nowrap"
              >
                {column.label}
                {arrow(column.sort)}
              </Table.ColumnHeader>
            ))}
          </Table.Row>
        </Table.Header>
        <Table.Body>
          {rows.length === 0 && !loading ? (
            <Table.Row>
              <Table.Cell colSpan={columns.length} color="fg.muted">
                {empty}
              </Table.Cell>
            </Table.Row>
          ) : null}
          {rows.map((row) => (
            <Table.Row key={rowKey(row)} {...(rowProps?.(row) ?? {})}>
              {columns.map((column) => (
                <Table.Cell key={column.key} verticalAlign="top">
                  {column.render(row)}
                </Table.Cell>
              ))}
            </Table.Row>
          ))}
        </Table.Body>
      </Table.Root>
      <HStack justify="space-between" p={2} borderTopWidth="1px">
        <Text fontSize="sm" color="fg.muted" data-testid="range">
          {loading ? <Spinner size="xs" mr={2} /> : null}
          {total === 0 ? "0 of 0" : `${formatNumber(offset + 1)}–${formatNumber(offset + rows.length)} of ${formatNumber(total)}`}
        </Text>
        <HStack>
          <NativeSelect.Root size="xs" width="110px">
            <NativeSelect.Field
              aria-label="Rows per page"
              value={limit}
              onChange={(e) => setLimit(Number(e.currentTarget.value))}
            >
              {[25, 50, 100, 500].map((n) => (
                <option key={n} value={n}>
                  {n} per page
                </option>
              ))}
            </NativeSelect.Field>
          </NativeSelect.Root>
          <Button size="xs" variant="outline" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - limit))}>
            Previous
          </Button>
          <Button size="xs" variant="outline" disabled={offset + limit >= total} onClick={() => setOffset(offset + limit)}>
            Next
          </Button>
        </HStack>
      </HStack>
    </Box>
  );
}

const PALETTE: Record<string, string> = {
  Ready: "blue",
  Waiting: "gray",
  "In Process": "cyan",
  Error: "red",
  "On Hold": "orange",
  Finished: "green",
  Success: "green",
  Succeeded: "green",
  Failed: "red",
  Running: "cyan",
  Interrupted: "orange",
  "Not run": "gray",
  Tracked: "green",
  "Filtered out": "gray",
  Quarantined: "red",
  Skipped: "yellow",
  "Pending approval": "orange",
  Approved: "green",
  Rejected: "red",
};

export const StatusBadge = ({ label }: { label: string }) => (
  <Badge colorPalette={PALETTE[label] ?? "gray"} variant="subtle" data-status={label}>
    {label}
  </Badge>
);

export type Message = { kind: "notice" | "error"; text: string; link?: { to: string; label: string } };

export const Notice = ({ message, onClose }: { message?: Message; onClose: () => void }) =>
  message ? (
    <Box
      role={message.kind === "error" ? "alert" : "status"}
      data-testid={message.kind}
      borderWidth="1px"
      borderRadius="md"
      p={3}
      mb={3}
      bg={message.kind === "error" ? "bg.error" : "bg.success"}
      color={message.kind === "error" ? "fg.error" : "fg.success"}
    >
      <HStack justify="space-between">
        <Text>
          {message.text}{" "}
          {message.link ? (
            <RouterLink to={message.link.to} data-testid="dag-run-link" style={{ textDecoration: "underline" }}>
              {message.link.label}
            </RouterLink>
          ) : null}
        </Text>
        <Button size="2xs" variant="ghost" onClick={onClose} aria-label="Close">
          ✕
        </Button>
      </HStack>
    </Box>
  ) : null;

/** Runs an action and turns its outcome into a notice. */
export function useAction(setMessage: (message: Message) => void, after?: () => void) {
  const [busy, setBusy] = useState(false);
  const run = async (action: () => Promise<{ message: string; details?: string[] } | Message>) => {
    setBusy(true);
    try {
      const result = await action();
      const message: Message =
        "kind" in result ? result : { kind: "notice", text: [result.message, ...(result.details ?? [])].join(" ") };
      setMessage(message);
      after?.();
    } catch (error) {
      setMessage({ kind: "error", text: error instanceof ApiError || error instanceof Error ? error.message : String(error) });
    } finally {
      setBusy(false);
    }
  };
  return { busy, run };
}

/** A button that asks "Sure?" inline before it acts. */
export function ConfirmButton({
  label,
  question,
  onConfirm,
  disabled,
  colorPalette = "red",
}: {
  label: string;
  question: string;
  onConfirm: () => void;
  disabled?: boolean;
  colorPalette?: string;
}) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <Button size="xs" variant="outline" colorPalette={colorPalette} disabled={disabled} onClick={() => setAsking(true)}>
        {label}
      </Button>
    );
  return (
    <HStack data-testid="confirm" gap={1} borderWidth="1px" borderRadius="md" p={1}>
      <Text fontSize="xs">{question}</Text>
      <Button
        size="xs"
        colorPalette={colorPalette}
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        Yes, {label.toLowerCase()}
      </Button>
      <Button size="xs" variant="ghost" onClick={() => setAsking(false)}>
        No
      </Button>
    </HStack>
  );
}

export const runPath = (dagId: string, runId: string) =>
  `/dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(runId)}`;

/** A task instance's page in the Airflow UI (its logs), as the UI routes it (mapped: /mapped/<index>). */
export const taskPath = (dagId: string, runId: string, taskId: string, mapIndex?: number | null) =>
  `${runPath(dagId, runId)}/tasks/${encodeURIComponent(taskId)}${mapIndex != null && mapIndex >= 0 ? `/mapped/${mapIndex}` : ""}`;

export const DagRunLink = ({
  dagId,
  runId,
  taskId,
  mapIndex,
  tryNumber,
}: {
  dagId: string;
  runId?: string | null;
  taskId?: string;
  mapIndex?: number | null;
  tryNumber?: number | null;
}) =>
  runId ? (
    <RouterLink
      to={taskId ? `${taskPath(dagId, runId, taskId, mapIndex)}${tryNumber ? `?try_number=${tryNumber}` : ""}` : runPath(dagId, runId)}
      style={{ textDecoration: "underline" }}
      data-testid="run-link"
    >
      {taskId ? "task log" : runId}
    </RouterLink>
  ) : null;

export const ConsoleLink = ({ page, params, children }: { page: string; params?: Params; children: ReactNode }) => {
  const query = new URLSearchParams(
    Object.entries(params ?? {}).flatMap(([k, v]) => (v === undefined || v === null || v === "" ? [] : [[k, String(v)]])),
  ).toString();
  return (
    <RouterLink to={`/plugin/dynamics-${page}${query ? `?${query}` : ""}`} style={{ textDecoration: "underline" }}>
      {children}
    </RouterLink>
  );
};

/** A labelled filter field. */
export const Field = ({ label, children }: { label: string; children: ReactNode }) => (
  <Box>
    <Text fontSize="xs" color="fg.muted" mb={1}>
      {label}
    </Text>
    {children}
  </Box>
);

export const Select = ({
  label,
  value,
  onChange,
  options,
  name,
}: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  options: [string, string][];
  name: string;
}) => (
  <Field label={label}>
    <NativeSelect.Root size="sm" width="200px">
      <NativeSelect.Field name={name} value={value} onChange={(e) => onChange(e.currentTarget.value)}>
        {options.map(([code, text]) => (
          <option key={code} value={code}>
            {text}
          </option>
        ))}
      </NativeSelect.Field>
    </NativeSelect.Root>
  </Field>
);

export const TextFilter = ({
  label,
  value,
  onChange,
  name,
  type = "text",
}: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  name: string;
  type?: string;
}) => (
  <Field label={label}>
    <Input size="sm" width="200px" name={name} type={type} value={value} onChange={(e) => onChange(e.currentTarget.value)} />
  </Field>
);
