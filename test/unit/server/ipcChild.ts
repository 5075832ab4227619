import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { IpcPeer } from '../../../src/server/ipc.js';
import { repoPath } from '../../helpers/paths.js';

/** A forked primary (fixtures/primary.mjs on dist/) and the test's end of the channel to it. */
export interface ChildPrimary {
  readonly child: ChildProcess;
  readonly peer: IpcPeer;
  /** SIGKILLs it; resolves once it is gone. */
  kill(): Promise<void>;
}

/** Forks the fixture primary and resolves once it is serving. */
export async function forkPrimary(opts: { auditFile?: string; env?: Record<string, string> } = {}): Promise<ChildPrimary> {
  if (!existsSync(repoPath('dist', 'server', 'ipc.js'))) throw new Error('dist/ is missing: run "npm run build"');
  const child = fork(repoPath('test', 'unit', 'server', 'fixtures', 'primary.mjs'), opts.auditFile ? [opts.auditFile] : [], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const peer = new IpcPeer((m) => {
    if (!child.connected) return false;
    child.send(m);
    return true;
  });
  child.on('message', (m) => peer.receive(m));
  child.on('disconnect', () => peer.close('the primary process is gone'));
  await new Promise<void>((resolve, reject) => {
    peer.handle('up', () => resolve());
    child.once('exit', (code) => reject(new Error(`fixture primary exited (${code})`)));
  });
  return {
    child,
    peer,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGKILL');
      await gone;
    },
  };
}
