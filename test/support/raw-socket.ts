import WebSocket from 'ws';
import { tracked } from './leftovers.js';

/**
 * A WebSocket speaking graphql-transport-ws by hand, so a test can send what no well-behaved client
 * would: every frame received, and how the socket closed.
 */
export interface RawSocket {
  frames: { type?: string; id?: string; payload?: any }[];
  /** Frames that were not JSON, as text. */
  garbage: string[];
  closed: Promise<{ code: number; reason: string }>;
  isOpen(): boolean;
  send(frame: unknown): void;
  sendText(text: string): void;
  /** Resolves with the first frame `predicate` accepts, or null once the socket closed or `timeoutMs` passed. */
  waitFor(predicate: (frame: RawSocket['frames'][number]) => boolean, timeoutMs?: number): Promise<RawSocket['frames'][number] | null>;
  close(): void;
}

export async function openRawSocket(wsUrl: string, protocol = 'graphql-transport-ws'): Promise<RawSocket> {
  const socket = new WebSocket(wsUrl, protocol);
  const frames: RawSocket['frames'] = [];
  const garbage: string[] = [];
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const listener of listeners) listener();
  };
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      notify();
    });
  });
  socket.on('error', () => {});
  socket.on('message', (data) => {
    const text = data.toString();
    try {
      frames.push(JSON.parse(text));
    } catch {
      garbage.push(text);
    }
    notify();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  return tracked({
    frames,
    garbage,
    closed,
    isOpen: () => socket.readyState === WebSocket.OPEN,
    send: (frame) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
    },
    sendText: (text) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(text);
    },
    waitFor: (predicate, timeoutMs = 5_000) =>
      new Promise((resolve) => {
        const check = () => {
          const found = frames.find(predicate);
          if (found || socket.readyState === WebSocket.CLOSED) {
            clearTimeout(timer);
            listeners.delete(check);
            resolve(found ?? null);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          resolve(null);
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
    close: () => socket.terminate(),
  });
}
