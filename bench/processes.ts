/** The servers under test as child processes: started as `npm start` would, found by their log line, stopped cleanly. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface ServerProcess {
  name: string;
  pid: number;
  url: string;
  wsUrl: string;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<string>;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Resident set size in bytes (VmRSS of /proc/<pid>/status). */
  rss(): number;
  /** CPU time used so far in seconds, user and system (/proc/<pid>/stat): per operation, it is robust to a busy machine. */
  cpuSeconds(): number;
  /** The last lines it printed, for error messages. */
  tail(): string;
  stop(): Promise<void>;
}

/** Linux's USER_HZ, the unit of /proc/<pid>/stat times (100 on every mainstream kernel). */
const CLOCK_TICKS = 100;

const LISTEN_LINE = /http:\/\/127\.0\.0\.1:(\d+)\/graphql/;

/**
 * Spawns `node --import tsx <script>` (`node`: this process's Node.js unless given) in the repository root and waits for the line that names its
 * URL. `stdin` stays open as a pipe: the bare server exits when it closes.
 */
export async function startServer(
  name: string,
  script: string,
  env: Record<string, string | undefined>,
  nodeArgs: string[] = [],
  timeoutMs = 90_000,
  node = process.execPath,
): Promise<ServerProcess> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['DATABASE_URL', 'STATEHOUSE_DATA_DIR', 'STATEHOUSE_ADMIN_TOKEN', 'PORT', 'HOST', 'LOG_LEVEL']) delete childEnv[key];
  for (const [key, value] of Object.entries(env)) if (value !== undefined) childEnv[key] = value;
  const child: ChildProcess = spawn(node, [...nodeArgs, '--import', 'tsx', script], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let exitedWith: string | undefined;
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      exitedWith = signal ?? String(code);
      resolve(exitedWith);
    });
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not report its URL within ${timeoutMs / 1000} s\n${lines.join('\n')}`)),
      timeoutMs,
    );
    const onLine = (line: string) => {
      lines.push(line);
      if (lines.length > 40) lines.shift();
      const match = LISTEN_LINE.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${match[1]}/graphql`);
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buffered = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        buffered += chunk;
        let newline = buffered.indexOf('\n');
        while (newline >= 0) {
          onLine(buffered.slice(0, newline));
          buffered = buffered.slice(newline + 1);
          newline = buffered.indexOf('\n');
        }
      });
    }
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${how}) before it listened:\n${lines.join('\n')}`));
    });
  }).catch(async (error: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw error;
  });
  const pid = child.pid ?? 0;
  let stopping: Promise<void> | undefined;
  return {
    name,
    pid,
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    exited,
    alive: () => exitedWith === undefined,
    rss: () => {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (!match) throw new Error(`no VmRSS for ${name} (pid ${pid})`);
      return Number(match[1]) * 1024;
    },
    cpuSeconds: () => cpuSecondsOf(pid),
    tail: () => lines.join('\n'),
    stop: () => {
      stopping ??= (async () => {
        if (exitedWith !== undefined) return;
        child.stdin?.end();
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(killer);
      })();
      return stopping;
    },
  };
}

/**
 * CPU time of a process and its running children (a gateway's worker processes), user and system,
 * in seconds. Fields after "pid (comm) ": state is the first, utime the 12th, stime the 13th; in
 * clock ticks of 1/100 s.
 */
function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let seconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  let children: string[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  } catch {
    // No children file (an old kernel): the process alone.
  }
  for (const child of children) {
    try {
      seconds += cpuSecondsOf(Number(child));
    } catch {
      // A child that exited meanwhile.
    }
  }
  return seconds;
}
