/** The results: one table on stdout, the same as JSON in bench/results/. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Measurement } from './measure.js';
import { ROOT } from './processes.js';

export type RowStatus = 'ok' | 'failed' | 'not implemented';

export interface ResultRow {
  /** Workload number as in issue 4 ("1" … "11"). */
  id: string;
  /** For 11 (growth): the workload it reruns. */
  of?: string;
  workload: string;
  /** Concurrent connections (HTTP) or subscribers; null where it does not apply. */
  connections: number | null;
  status: RowStatus;
  statehouse?: Measurement;
  bare?: Measurement;
  limit?: Measurement;
  /** Statehouse / bare and Statehouse / limit of `value`. */
  ratioBare?: number;
  ratioLimit?: number;
  /** For memory: a smaller figure is better, so a ratio below 1 is good. */
  lowerIsBetter?: boolean;
  note?: string;
}

export function withRatios(row: ResultRow): ResultRow {
  // Only between positive figures: a memory figure at or below zero is RSS noise, not a measurement.
  const sh = row.statehouse?.value;
  if (sh !== undefined && sh > 0 && row.bare && row.bare.value > 0) row.ratioBare = sh / row.bare.value;
  if (sh !== undefined && sh > 0 && row.limit && row.limit.value > 0) row.ratioLimit = sh / row.limit.value;
  return row;
}

const UNIT_LABEL: Record<string, string> = {
  'ops/s': 'ops/s',
  'deliveries/s': 'deliv/s',
  'changes/s': 'chg/s',
  'bytes/socket': 'KB/sock',
  'entry-writes/s': 'writes/s',
  'points/s': 'points/s',
};

function figure(m: Measurement | undefined): string {
  if (!m) return '—';
  if (m.unit === 'bytes/socket') return `${(m.value / 1024).toFixed(1)} ${UNIT_LABEL[m.unit]}`;
  const rounded = m.value >= 100 ? Math.round(m.value).toLocaleString('en-US') : m.value.toFixed(1);
  return `${rounded} ${UNIT_LABEL[m.unit] ?? m.unit}`;
}

const ms = (value: number | undefined) =>
  value === undefined || Number.isNaN(value) ? '—' : `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`;
const ratio = (value: number | undefined) => (value === undefined ? '—' : `${value.toFixed(2)}×`);

/** Server CPU per operation, Statehouse's and the bare server's: unlike ops/s, it hardly moves when the machine is busy. */
function cpuPerOp(row: ResultRow): string {
  const of = (m: Measurement | undefined) => m?.extra?.cpuMicrosPerOp as number | undefined;
  const sh = of(row.statehouse);
  const bare = of(row.bare);
  if (sh === undefined && bare === undefined) return '';
  const shown = (value: number | undefined) => (value === undefined ? '—' : Math.round(value).toLocaleString('en-US'));
  return `${shown(sh)} / ${shown(bare)} µs`;
}

/** The table as text, one line per row, columns aligned. */
export function formatTable(rows: ResultRow[]): string {
  const header = ['#', 'workload', 'conns', 'Statehouse', 'p50', 'p99', 'bare', 'limit', 'SH/bare', 'SH/limit', 'CPU/op SH / bare', 'note'];
  const lines = rows.map((row) => {
    if (row.status === 'not implemented') {
      return [row.id, row.workload, '—', row.note ?? 'not yet implemented', '', '', '', '', '', '', '', ''];
    }
    return [
      row.id,
      row.workload,
      row.connections === null ? '—' : String(row.connections),
      row.status === 'failed' && !row.statehouse ? 'FAILED' : figure(row.statehouse),
      ms(row.statehouse?.p50),
      ms(row.statehouse?.p99),
      figure(row.bare),
      figure(row.limit),
      ratio(row.ratioBare),
      ratio(row.ratioLimit),
      cpuPerOp(row),
      row.note ?? '',
    ];
  });
  const all = [header, ...lines];
  const widths = header.map((_, column) => Math.max(...all.map((line) => (line[column] ?? '').length)));
  const numeric = new Set([2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const render = (line: string[]) =>
    line
      .map((cell, column) => (numeric.has(column) ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [render(header), render(widths.map((width) => '-'.repeat(width))), ...lines.map(render)].join('\n');
}

export interface Report {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  ok: boolean;
  failure?: string;
  backend: string;
  options: Record<string, unknown>;
  machine: Record<string, unknown>;
  notes: string[];
  rows: ResultRow[];
}

/** Writes bench/results/<ISO timestamp>.json and returns its path. */
export function writeReport(report: Report): string {
  const directory = join(ROOT, 'bench', 'results');
  mkdirSync(directory, { recursive: true });
  const file = join(directory, `${report.startedAt.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
