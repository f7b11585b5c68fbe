// A host process for the cross-terminal tests until they use `ravenclaws serve`:
// hosts the state dir of argv[2] (workdir), creates the heartbeats named in
// HOST_CREATE (comma-separated) with a 1 h interval, prints "ready" once each
// has ticked, and closes on SIGTERM (exit 0).
import { createHost } from "../../dist/host/host.js";

const workdir = process.argv[2];
const host = await createHost({
  stateDir: `${workdir}/.ravenclaws`,
  workdir,
  env: process.env,
  defaults: { baseUrl: process.env.HOST_BASE_URL, model: "fake" },
});
const ids = (process.env.HOST_CREATE ?? "").split(",").filter(Boolean);
const ticked = new Set();
host.subscribe((event) => {
  if (event.type === "tick") ticked.add(event.id);
  if (event.type === "tick" || event.type === "state")
    process.stdout.write(
      `${event.type} ${event.id} ${event.summary.status} ${event.summary.tick}\n`,
    );
  if (ids.length > 0 && ids.every((id) => ticked.has(id)) && !ready) {
    ready = true;
    process.stdout.write("ready\n");
  }
});
let ready = ids.length === 0;
for (const id of ids) {
  await host.create({ id, goal: `goal of ${id}`, settings: { tickInterval: 3600, tools: false } });
}
if (ready) process.stdout.write("ready\n");
process.on("SIGTERM", () => {
  host.close().then(() => process.exit(0));
});
