/** What main.ts needs from each subcommand. */
export interface Command {
  name: string;
  /** The whole `--help` text. */
  help: string;
  /** Run with the arguments after the command name; resolves with the exit status. */
  run(argv: string[]): Promise<number>;
}
