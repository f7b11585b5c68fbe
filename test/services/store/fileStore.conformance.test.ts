/** The file store passes the HeartbeatStore conformance suite, on real files in a temp dir. */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileStoreBackend, heartbeatPaths } from "../../../src/services/store/index.js";
import { describeStoreConformance } from "./conformance.js";

describeStoreConformance("file store", async () => {
  const base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-conformance-")));
  const stateDir = path.join(base, "state");
  return {
    backend: fileStoreBackend(stateDir),
    // A state file cut in half: what a write that was not atomic would leave.
    async tearSnapshot(id) {
      const file = heartbeatPaths(stateDir, id).stateFile;
      const text = await fs.readFile(file, "utf8");
      await fs.writeFile(file, text.slice(0, Math.floor(text.length / 2)));
    },
    // A crash in the middle of an append.
    async tearJournal(id) {
      await fs.appendFile(heartbeatPaths(stateDir, id).journal, '{"type":"tick","seq":9,"ti');
    },
    close: () => fs.rm(base, { recursive: true, force: true }),
  };
});
