// Trends over a chosen period, per hour or day (UTC): sync inserted/modified/failed per mapping, posting volume
// and errors per job queue category, mailbox items and failures. Stacked bar charts (chart.js) in the UI's colours.
import { Box, Heading, HStack, SimpleGrid, Stack, Text } from "@chakra-ui/react";
import {
  BarElement,
  CategoryScale,
  Chart as ChartJS,
  type ChartData,
  Legend,
  LinearScale,
  Tooltip,
} from "chart.js";
import { useEffect, useMemo, useState } from "react";
import { Bar } from "react-chartjs-2";

import { get, type Params } from "../api";
import { Select, TextFilter } from "../components";
import { useCategories } from "./JobQueue";
import { useMappings } from "./Sync";

ChartJS.register(BarElement, CategoryScale, LinearScale, Tooltip, Legend);

type Row = { bucket: string } & Record<string, string | number>;

const COLOURS: Record<string, string> = {
  inserted: "#2e7d32",
  modified: "#1565c0",
  deleted: "#6d4c41",
  skipped: "#f9a825",
  failed: "#c62828",
  posted: "#2e7d32",
  tracked: "#2e7d32",
  filtered: "#9e9e9e",
  quarantined: "#c62828",
};

const cssColour = (token: string, fallback: string) =>
  getComputedStyle(document.documentElement).getPropertyValue(`--chakra-colors-${token}`).trim() || fallback;

/** Every bucket of the period (ISO instants, UTC), so days or hours without activity show as zero. */
export function periodBuckets(bucket: string, dateFrom: string, dateTo: string): string[] {
  const step = bucket === "hour" ? 3_600_000 : 86_400_000;
  const start = Date.parse(`${dateFrom}T00:00:00Z`);
  const end = Date.parse(`${dateTo}T00:00:00Z`) + 86_400_000;
  if (!(end > start) || (end - start) / step > 744) return [];
  const out: string[] = [];
  for (let t = start; t < end; t += step) out.push(new Date(t).toISOString());
  return out;
}

function TrendChart({
  id,
  title,
  rows,
  series,
  buckets,
}: {
  id: string;
  title: string;
  rows: Row[];
  series: string[];
  buckets: string[];
}) {
  const text = cssColour("fg-muted", "#666");
  const grid = cssColour("border", "#ddd");
  const data: ChartData<"bar"> = useMemo(() => {
    const daily = buckets.length < 2 || Date.parse(buckets[1]) - Date.parse(buckets[0]) >= 86_400_000;
    const label = (b: string) => b.replace("T", " ").slice(0, daily ? 10 : 16);
    const sums = new Map<string, Record<string, number>>();
    for (const row of rows) {
      const key = new Date(row.bucket).toISOString();
      const sum = sums.get(key) ?? {};
      for (const name of series) sum[name] = (sum[name] ?? 0) + Number(row[name] ?? 0);
      sums.set(key, sum);
    }
    return {
      labels: buckets.map(label),
      datasets: series.map((name) => ({
        label: name,
        backgroundColor: COLOURS[name] ?? "#888",
        data: buckets.map((b) => sums.get(b)?.[name] ?? 0),
        stack: "all",
      })),
    };
  }, [rows, series, buckets]);
  const total = rows.reduce((sum, r) => sum + series.reduce((s, name) => s + Number(r[name] ?? 0), 0), 0);
  return (
    <Box borderWidth="1px" borderRadius="md" p={3} bg="bg.panel" data-testid={id}>
      <HStack justify="space-between">
        <Heading size="sm">{title}</Heading>
        <Text fontSize="xs" color="fg.muted">
          {total.toLocaleString("en-US")} in the period
        </Text>
      </HStack>
      {rows.length === 0 ? (
        <Text color="fg.muted" p={6}>
          Nothing in this period.
        </Text>
      ) : (
        <Box height="260px">
          <Bar
            data={data}
            options={{
              maintainAspectRatio: false,
              animation: false,
              plugins: { legend: { labels: { color: text } } },
              scales: {
                x: { stacked: true, ticks: { color: text }, grid: { color: grid } },
                y: { stacked: true, beginAtZero: true, ticks: { color: text, precision: 0 }, grid: { color: grid } },
              },
            }}
          />
        </Box>
      )}
    </Box>
  );
}

function useTrend(path: string, params: Params): Row[] {
  const [rows, setRows] = useState<Row[]>([]);
  const key = JSON.stringify(params);
  useEffect(() => {
    get<Row[]>(path, params).then(setRows, () => setRows([]));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, key]);
  return rows;
}

const isoDay = (offsetDays: number) => new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);

export function TrendsPage() {
  const [bucket, setBucket] = useState("day");
  const [dateFrom, setDateFrom] = useState(isoDay(-13));
  const [dateTo, setDateTo] = useState(isoDay(0));
  const [mapping, setMapping] = useState("");
  const [category, setCategory] = useState("");
  const mappings = useMappings();
  const categories = useCategories();
  const period = { bucket, date_from: dateFrom, date_to: dateTo };
  const sync = useTrend("/sync/trends", { ...period, mapping });
  const posting = useTrend("/job-queue-trends", { ...period, category });
  const mail = useTrend("/mailbox-trends", period);
  const perMapping = [...new Set(sync.map((r) => String(r.mapping)))];
  const buckets = periodBuckets(bucket, dateFrom, dateTo);
  return (
    <Stack gap={4}>
      <HStack gap={4} align="end" wrap="wrap">
        <Select label="Per" name="bucket" value={bucket} onChange={setBucket} options={[["day", "Day"], ["hour", "Hour"]]} />
        <TextFilter label="From (UTC day)" name="date_from" type="date" value={dateFrom} onChange={setDateFrom} />
        <TextFilter label="To (UTC day)" name="date_to" type="date" value={dateTo} onChange={setDateTo} />
        <Select
          label="Mapping"
          name="mapping"
          value={mapping}
          onChange={setMapping}
          options={[["", "All mappings"], ...mappings.map((m): [string, string] => [m.name, m.name])]}
        />
        <Select label="Category" name="category" value={category} onChange={setCategory} options={categories} />
      </HStack>
      <TrendChart id="trend-sync" title="Integration sync: inserted, modified, failed" rows={sync} series={["inserted", "modified", "failed"]} buckets={buckets} />
      {mapping === "" && perMapping.length > 1 ? (
        <SimpleGrid columns={{ base: 1, lg: 2 }} gap={4}>
          {perMapping.map((name) => (
            <TrendChart
              key={name}
              id={`trend-sync-${name}`}
              title={name}
              rows={sync.filter((r) => r.mapping === name)}
              series={["inserted", "modified", "failed"]}
              buckets={buckets}
            />
          ))}
        </SimpleGrid>
      ) : null}
      <SimpleGrid columns={{ base: 1, lg: 2 }} gap={4}>
        <TrendChart id="trend-posting" title="Posting: documents posted and failed" rows={posting} series={["posted", "failed"]} buckets={buckets} />
        <TrendChart id="trend-mailbox" title="Mailboxes: items tracked, filtered, quarantined" rows={mail} series={["tracked", "filtered", "quarantined"]} buckets={buckets} />
      </SimpleGrid>
    </Stack>
  );
}
