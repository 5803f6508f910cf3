/**
 * One process of a socket bench cell (bench/socket-workloads.ts forks it):
 *   node socket-worker.js client|server '<params as JSON>'
 * The server reports `ready`, answers stats requests and exits on `exit`; the client runs the
 * cell's workload and sends back its result, over the IPC channel.
 */
import { clientMain, serverMain, type Params } from './socket-workloads.js';

const [role, params] = process.argv.slice(2);
if (params === undefined || (role !== 'client' && role !== 'server')) {
  console.error('usage: socket-worker.js client|server <params JSON> (started by the socket bench)');
  process.exit(2);
}
const p = JSON.parse(params) as Params;
if (role === 'client') {
  clientMain(p).then(
    (result) => {
      process.send!({ result });
      process.disconnect();
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
} else {
  void serverMain(p);
}
