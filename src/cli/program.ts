import { Command, CommanderError } from 'commander';

/**
 * Conventions shared by every `portcullis` command tree (built on commander): output goes to
 * the given streams, a parse error says what was wrong and where to find help, and nothing here
 * exits the process: {@link runCommand} resolves with the exit code (0 done or help shown,
 * 2 bad usage, otherwise whatever the command's action recorded).
 */

/** Where a command writes: its output, and its diagnostics. */
export interface CliIo {
  readonly out: { write(s: string): unknown };
  readonly err: { write(s: string): unknown };
}

/** Exit code of a command line that could not be understood. */
export const EXIT_USAGE = 2;

/** Thrown by an action for bad usage the parser cannot see (values that belong together, formats). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** The exit code an action records; actions set `code`, {@link runCommand} returns it. */
export interface ExitCode {
  code: number;
}

/** `portcullis audit verify`: the command's name with its ancestors. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Applies the conventions to `cmd` and every command below it (call once the tree is complete:
 * the help pointer names each command's full path).
 */
export function applyConventions(cmd: Command, io: CliIo): Command {
  cmd.exitOverride();
  cmd.configureOutput({
    writeOut: (s) => io.out.write(s),
    writeErr: (s) => io.err.write(s),
    outputError: (s, write) => write(`portcullis: ${s.replace(/^error: /, '')}`),
  });
  cmd.showHelpAfterError(`(run "${commandPath(cmd)} --help" for usage)`);
  for (const sub of cmd.commands) applyConventions(sub, io);
  return cmd;
}

/** The exit code of an error raised while parsing or by an action, writing what the user needs. */
export function exitCodeOf(err: unknown, cmd: Command, io: CliIo): number | null {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
  if (err instanceof UsageError) {
    io.err.write(`portcullis: ${err.message}\n(run "${commandPath(cmd)} --help" for usage)\n`);
    return EXIT_USAGE;
  }
  return null;
}

/**
 * Parses `argv` (the words after the command's own name) with `cmd` and runs the action it
 * selects. Resolves with the exit code; errors that are not usage errors are rethrown.
 */
export async function runCommand(cmd: Command, argv: readonly string[], io: CliIo, result: ExitCode): Promise<number> {
  let current = cmd;
  // The command whose action runs, so a usage error points at its own help.
  cmd.hook('preAction', (_root, action) => {
    current = action;
  });
  try {
    await cmd.parseAsync([...argv], { from: 'user' });
    return result.code;
  } catch (err) {
    const code = exitCodeOf(err, current, io);
    if (code === null) throw err;
    return code;
  }
}

/** Collects a repeatable option's values (`--public-key A --public-key B`). */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
