// Integration Sync: runs with their counts (and links to their DAG run and task log), errors with Retry / Skip /
// Un-skip and the reason of Skipped records, users' choices for update conflicts (answered required actions of
// mappings resolved by `ask`: who chose what), couplings with Uncouple (confirmed) and Couple (checked mapping and ids).
import { Button, Heading, HStack, Input, Stack, Text } from "@chakra-ui/react";
import { useEffect, useState } from "react";
import { useSearchParams } from "react-router-dom";

import { type ActionResult, del, get, post } from "../api";
import {
  type Column,
  ConfirmButton,
  DagRunLink,
  DataTable,
  Field,
  formatTime,
  type Message,
  Notice,
  Select,
  StatusBadge,
  TextFilter,
  useAction,
  useList,
} from "../components";

type Mapping = {
  name: string;
  loaded: boolean;
  direction_label: string | null;
  erp_entity_set: string | null;
  crm_entity_set: string | null;
};
type Run = {
  id: number;
  run_id: string;
  mapping: string;
  direction_label: string;
  status_label: string;
  started_at: string;
  finished_at: string | null;
  inserted: number;
  modified: number;
  deleted: number;
  unchanged: number;
  skipped: number;
  failed: number;
  message: string | null;
};
type SyncError = {
  mapping: string;
  direction: string;
  direction_label: string;
  source_id: string;
  source_key: string | null;
  destination_id: string | null;
  kind_label: string;
  message: string;
  error_count: number;
  skipped: boolean;
  skipped_reason: string | null;
  last_failed_at: string;
  run_id: string | null;
  choice_label: string | null;
  chosen_by: string | null;
};
type ConflictChoice = {
  id: number;
  mapping: string;
  source_id: string;
  source_key: string | null;
  destination_id: string | null;
  resolution_label: string;
  fields: { field: string; erp_field: string | null; erp: unknown; crm: unknown }[];
  chosen_by: string;
  chosen_at: string;
  run_id: string | null;
  task_id: string | null;
  applied_at: string | null;
  applied_run_id: string | null;
};
type Coupling = {
  mapping: string;
  erp_id: string;
  crm_id: string;
  erp_key: string | null;
  crm_key: string | null;
  coupled_at: string;
  synced_at: string;
};

/** The crm_sync task id of a mapping (its slug, as the DAG names its tasks). */
export const slug = (name: string) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "_")
    .replace(/^_+|_+$/g, "");

export function useMappings(): Mapping[] {
  const [mappings, setMappings] = useState<Mapping[]>([]);
  useEffect(() => {
    get<Mapping[]>("/sync/mappings").then(setMappings, () => setMappings([]));
  }, []);
  return mappings;
}

export function SyncPage({ canEdit }: { canEdit: boolean }) {
  const [params] = useSearchParams();
  const [mapping, setMapping] = useState(params.get("mapping") ?? "");
  const runId = params.get("run_id") ?? "";
  const [errorFilter, setErrorFilter] = useState("");
  const [search, setSearch] = useState("");
  const [message, setMessage] = useState<Message>();
  const mappings = useMappings();
  const runs = useList<Run>("/sync/runs", { mapping, run_id: runId }, "-started_at", 25);
  const errors = useList<SyncError>(
    "/sync/errors",
    { mapping, skipped: errorFilter === "" ? undefined : errorFilter === "skipped" },
    "-last_failed_at",
    25,
  );
  const choices = useList<ConflictChoice>("/sync/conflicts", { mapping }, "-chosen_at", 25);
  const couplings = useList<Coupling>("/sync/couplings", { mapping, search }, "mapping", 25);
  const reload = () => {
    errors.reload();
    couplings.reload();
  };
  const action = useAction(setMessage, reload);
  const [couple, setCouple] = useState({ mapping: "", erp_id: "", crm_id: "" });

  const runColumns: Column<Run>[] = [
    { key: "started", label: "Started", sort: "started_at", render: (r) => formatTime(r.started_at) },
    { key: "mapping", label: "Mapping", sort: "mapping", render: (r) => r.mapping },
    { key: "direction", label: "Direction", sort: "direction", render: (r) => r.direction_label },
    { key: "status", label: "Status", sort: "status", render: (r) => <StatusBadge label={r.status_label} /> },
    ...(["inserted", "modified", "deleted", "unchanged", "skipped", "failed"] as const).map(
      (name): Column<Run> => ({ key: name, label: name[0].toUpperCase() + name.slice(1), sort: name, render: (r) => r[name] }),
    ),
    {
      key: "run",
      label: "DAG run",
      render: (r) => (
        <Stack gap={0}>
          <DagRunLink dagId="crm_sync" runId={r.run_id} />
          <DagRunLink dagId="crm_sync" runId={r.run_id} taskId={slug(r.mapping)} />
        </Stack>
      ),
    },
  ];
  const show = (value: unknown) => (value === null || value === undefined || value === "" ? "(blank)" : String(value));
  const choiceColumns: Column<ConflictChoice>[] = [
    { key: "chosen", label: "Chosen", sort: "chosen_at", render: (c) => formatTime(c.chosen_at) },
    { key: "mapping", label: "Mapping", sort: "mapping", render: (c) => c.mapping },
    { key: "key", label: "Record", sort: "source_key", render: (c) => <Text title={c.source_id}>{c.source_key ?? c.source_id}</Text> },
    {
      key: "fields",
      label: "Values (ERP / CRM)",
      render: (c) => (
        <Stack gap={0}>
          {c.fields.map((f) => (
            <Text key={f.field} fontSize="xs">
              {f.erp_field ?? f.field}: {show(f.erp)} / {show(f.crm)}
            </Text>
          ))}
        </Stack>
      ),
    },
    { key: "resolution", label: "Choice", sort: "resolution", render: (c) => c.resolution_label },
    { key: "by", label: "Chosen by", sort: "chosen_by", render: (c) => c.chosen_by },
    { key: "applied", label: "Applied", sort: "applied_at", render: (c) => (c.applied_at ? formatTime(c.applied_at) : "next run") },
    {
      key: "run",
      label: "DAG runs",
      render: (c) => (
        <Stack gap={0}>
          <DagRunLink dagId="crm_sync" runId={c.run_id} taskId={c.task_id ?? undefined} />
          {c.applied_run_id ? <DagRunLink dagId="crm_sync" runId={c.applied_run_id} taskId={slug(c.mapping)} /> : null}
        </Stack>
      ),
    },
  ];
  const errorColumns: Column<SyncError>[] = [
    { key: "mapping", label: "Mapping", sort: "mapping", render: (e) => `${e.mapping} (${e.direction_label})` },
    { key: "key", label: "Record", sort: "source_key", render: (e) => <Text title={e.source_id}>{e.source_key ?? e.source_id}</Text> },
    { key: "kind", label: "Kind", sort: "kind", render: (e) => e.kind_label },
    {
      key: "message",
      label: "Error",
      render: (e) => (
        <Stack gap={1}>
          <Text>{e.message}</Text>
          {e.chosen_by ? (
            <Text fontSize="xs" data-testid="conflict-choice">
              {e.choice_label}, chosen by {e.chosen_by}
            </Text>
          ) : null}
          {e.skipped ? (
            <Text fontSize="xs" color="fg.warning" data-testid="skipped-reason">
              <StatusBadge label="Skipped" /> {e.skipped_reason}
            </Text>
          ) : null}
        </Stack>
      ),
    },
    { key: "count", label: "Failures", sort: "error_count", render: (e) => e.error_count },
    { key: "last", label: "Last failed", sort: "last_failed_at", render: (e) => formatTime(e.last_failed_at) },
    { key: "run", label: "DAG run", render: (e) => <DagRunLink dagId="crm_sync" runId={e.run_id} taskId={slug(e.mapping)} /> },
    {
      key: "actions",
      label: "",
      render: (e) =>
        canEdit ? (
          <HStack gap={1}>
            {(e.skipped ? ["retry", "unskip"] : ["retry", "skip"]).map((name) => (
              <Button
                key={name}
                size="xs"
                variant="outline"
                disabled={action.busy}
                onClick={() =>
                  action.run(() =>
                    post<ActionResult>(`/sync/errors/${name}`, {
                      mapping: e.mapping,
                      direction: e.direction,
                      source_id: e.source_id,
                    }),
                  )
                }
              >
                {name === "unskip" ? "Un-skip" : name[0].toUpperCase() + name.slice(1)}
              </Button>
            ))}
          </HStack>
        ) : null,
    },
  ];
  const couplingColumns: Column<Coupling>[] = [
    { key: "mapping", label: "Mapping", sort: "mapping", render: (c) => c.mapping },
    { key: "erp_key", label: "ERP key", sort: "erp_key", render: (c) => c.erp_key },
    { key: "erp_id", label: "ERP id", sort: "erp_id", render: (c) => <Text fontFamily="mono" fontSize="xs">{c.erp_id}</Text> },
    { key: "crm_key", label: "CRM key", sort: "crm_key", render: (c) => c.crm_key },
    { key: "crm_id", label: "CRM id", sort: "crm_id", render: (c) => <Text fontFamily="mono" fontSize="xs">{c.crm_id}</Text> },
    { key: "synced", label: "Synced", sort: "synced_at", render: (c) => formatTime(c.synced_at) },
    {
      key: "actions",
      label: "",
      render: (c) =>
        canEdit ? (
          <ConfirmButton
            label="Uncouple"
            question="Uncouple? The next run treats both records as new."
            disabled={action.busy}
            onConfirm={() =>
              action.run(() =>
                del<ActionResult>(`/sync/couplings/${encodeURIComponent(c.mapping)}/${encodeURIComponent(c.erp_id)}`, {
                  confirm: true,
                }),
              )
            }
          />
        ) : null,
    },
  ];
  const loaded = mappings.filter((m) => m.loaded);
  return (
    <Stack gap={4}>
      <Notice message={message} onClose={() => setMessage(undefined)} />
      <HStack gap={4} align="end">
        <Select
          label="Mapping"
          name="mapping"
          value={mapping}
          onChange={setMapping}
          options={[["", "All mappings"], ...mappings.map((m): [string, string] => [m.name, m.name])]}
        />
        {runId ? <Text color="fg.muted">Runs of DAG run {runId}</Text> : null}
      </HStack>
      <Heading size="md">Integration Synch. Jobs</Heading>
      <DataTable id="sync-runs" list={runs} columns={runColumns} rowKey={(r) => String(r.id)} empty="No runs yet." />
      <Heading size="md">Errors</Heading>
      <Select
        label="Show"
        name="skipped"
        value={errorFilter}
        onChange={setErrorFilter}
        options={[["", "All failing records"], ["skipped", "Skipped only"], ["failing", "Not skipped"]]}
      />
      <DataTable
        id="sync-errors"
        list={errors}
        columns={errorColumns}
        rowKey={(e) => `${e.mapping}/${e.direction}/${e.source_id}`}
        rowProps={(e) => ({ "data-source-id": e.source_id })}
        empty="No failing records."
      />
      <Heading size="md">Update conflicts: users' choices</Heading>
      <DataTable
        id="conflict-choices"
        list={choices}
        columns={choiceColumns}
        rowKey={(c) => String(c.id)}
        rowProps={(c) => ({ "data-source-id": c.source_id })}
        empty="No conflict has been answered (mappings resolving update conflicts by ask list them here)."
      />
      <Heading size="md">Couplings</Heading>
      <TextFilter label="Search ids or keys" name="search" value={search} onChange={setSearch} />
      <DataTable
        id="couplings"
        list={couplings}
        columns={couplingColumns}
        rowKey={(c) => `${c.mapping}/${c.erp_id}`}
        rowProps={(c) => ({ "data-erp-id": c.erp_id })}
        empty="No couplings match."
      />
      {canEdit ? (
        <HStack id="couple-form" gap={3} align="end" wrap="wrap" borderWidth="1px" borderRadius="md" p={3} bg="bg.panel">
          <Select
            label="Couple: mapping"
            name="couple-mapping"
            value={couple.mapping}
            onChange={(value) => setCouple({ ...couple, mapping: value })}
            options={[["", "Choose a mapping"], ...loaded.map((m): [string, string] => [m.name, `${m.name} (${m.erp_entity_set} ↔ ${m.crm_entity_set})`])]}
          />
          <Field label="ERP record id (GUID)">
            <Input size="sm" width="300px" name="erp_id" value={couple.erp_id} onChange={(e) => setCouple({ ...couple, erp_id: e.currentTarget.value })} />
          </Field>
          <Field label="CRM record id (GUID)">
            <Input size="sm" width="300px" name="crm_id" value={couple.crm_id} onChange={(e) => setCouple({ ...couple, crm_id: e.currentTarget.value })} />
          </Field>
          <Button
            size="sm"
            disabled={action.busy || !couple.mapping || !couple.erp_id || !couple.crm_id}
            onClick={() => action.run(() => post<ActionResult>("/sync/couplings", couple))}
          >
            Couple
          </Button>
        </HStack>
      ) : null}
    </Stack>
  );
}
