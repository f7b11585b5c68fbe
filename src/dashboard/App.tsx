/** The dashboard: the overview of every heartbeat, and one heartbeat in detail (`#/h/<id>`). */
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import type {
  HeartbeatDetail,
  HeartbeatSummary,
  JournalEntry,
  MachineResponse,
} from "../serve/api.types.js";
import { api, connectEvents, RequestError } from "./client.js";
import { clockTime, countdown, formatCost, formatDuration, formatTokens } from "./format.js";
import { baselineOf, tickRows, usageSeries } from "./journal.js";
import { Plot } from "./PlotView.js";
import { Statechart } from "./StatechartView.js";

const selectedFromHash = () => {
  const m = /^#\/h\/(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1] as string) : null;
};

/** The statuses that can be started again / stopped / woken. */
const canStop = (s: string) => s === "sleeping" || s === "queued" || s === "ticking";
const canStart = (s: string) => s === "stopped";
const canWake = (s: string) => s === "sleeping";

function StatusBadge({ h }: { h: HeartbeatSummary }) {
  return (
    <span class={`badge status-${h.status}`} data-status={h.status}>
      {h.status}
    </span>
  );
}

function Outcome({ outcome }: { outcome: string | null }) {
  if (!outcome) return <span class="muted">–</span>;
  return <span class={`outcome outcome-${outcome}`}>{outcome}</span>;
}

function Overview({ list, now }: { list: HeartbeatSummary[]; now: number }) {
  if (list.length === 0) {
    return (
      <p class="empty">
        No heartbeats yet. Create one with <code>POST /api/heartbeats</code> (see the README).
      </p>
    );
  }
  return (
    <table class="overview">
      <thead>
        <tr>
          <th>Heartbeat</th>
          <th>State</th>
          <th class="num">Tick</th>
          <th>Next tick</th>
          <th class="num">Tokens</th>
          <th class="num">Cost</th>
          <th>Last tick</th>
          <th class="num">Approvals</th>
        </tr>
      </thead>
      <tbody>
        {list.map((h) => (
          <tr key={h.id} data-id={h.id} class="row">
            <td data-label="Heartbeat" class="id-cell">
              <a href={`#/h/${encodeURIComponent(h.id)}`} class="hb-link">
                {h.id}
              </a>
              <div class="goal" title={h.goal}>
                {h.goal}
              </div>
            </td>
            <td data-label="State">
              <StatusBadge h={h} />
              {h.state !== h.status && <span class="state-name"> {h.state}</span>}
              {h.reason && <span class="muted"> ({h.reason})</span>}
              {h.problem && <div class="problem">{h.problem}</div>}
            </td>
            <td data-label="Tick" class="num tick-cell">
              {h.tick}
            </td>
            <td data-label="Next tick" class="next-cell">
              {h.status === "sleeping" || h.status === "queued"
                ? countdown(h.nextTickAt, now)
                : "–"}
            </td>
            <td data-label="Tokens" class="num">
              {formatTokens(h.tokens)}
            </td>
            <td data-label="Cost" class="num">
              {formatCost(h.costUsd)}
            </td>
            <td data-label="Last tick">
              <Outcome outcome={h.lastOutcome} />
            </td>
            <td data-label="Approvals" class="num">
              {h.pendingApprovals > 0 ? (
                <span class="badge waiting">{h.pendingApprovals} waiting</span>
              ) : (
                <span class="muted">0</span>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface DetailProps {
  summary: HeartbeatSummary | undefined;
  detail: HeartbeatDetail | null;
  journal: JournalEntry[];
  machine: MachineResponse | null;
  now: number;
  act: (action: string, body?: Record<string, unknown>) => void;
  busy: boolean;
}

function Detail({ summary, detail, journal, machine, now, act, busy }: DetailProps) {
  const h = summary ?? detail;
  const rows = useMemo(() => tickRows(journal), [journal]);
  const series = useMemo(() => usageSeries(rows, baselineOf(journal)), [rows, journal]);
  if (!h) return <p class="empty">Loading…</p>;
  const approvals = detail?.approvals ?? [];
  return (
    <div class="detail" data-id={h.id}>
      <header class="detail-head">
        <div>
          <h2>
            {h.id} <StatusBadge h={h} />
          </h2>
          <p class="goal-full">{detail?.goalText ?? h.goal}</p>
          <p class="facts">
            <span>
              tick <b class="tick-value">{h.tick}</b>
              {detail && detail.maxTicks > 0 ? ` / ${detail.maxTicks}` : ""}
            </span>
            <span>
              next{" "}
              <b>
                {h.status === "sleeping" || h.status === "queued"
                  ? countdown(h.nextTickAt, now)
                  : "–"}
              </b>
            </span>
            <span>
              <b>{formatTokens(h.tokens)}</b> tokens
            </span>
            <span>
              cost <b>{formatCost(h.costUsd)}</b>
            </span>
            {h.reason && (
              <span>
                reason <b>{h.reason}</b>
              </span>
            )}
          </p>
        </div>
        <div class="actions">
          <button
            type="button"
            class="wake"
            disabled={busy || !canWake(h.status)}
            onClick={() => act("wake")}
          >
            Wake
          </button>
          <button
            type="button"
            class="stop"
            disabled={busy || !canStop(h.status)}
            onClick={() => act("stop")}
          >
            Stop
          </button>
          <button
            type="button"
            class="start"
            disabled={busy || !canStart(h.status)}
            onClick={() => act("start")}
          >
            Start
          </button>
        </div>
      </header>
      {detail?.error && (
        <p class="error-box">
          <b>{detail.error.code}</b>: {detail.error.message}
        </p>
      )}
      {approvals.length > 0 && (
        <section class="card approvals">
          <h3>Waiting for approval</h3>
          {approvals.map((a) => (
            <div class="approval" key={a.callId} data-call={a.callId}>
              <div>
                <b>{a.tool}</b>
                {a.what ? <span class="what"> · {a.what}</span> : null}
                <div>
                  <code class="args">{a.args}</code>
                </div>
                <div class="muted">
                  {a.rule ? `rule ${a.rule} · ` : ""}since {clockTime(a.since)}
                </div>
              </div>
              <div class="actions">
                <button
                  type="button"
                  class="approve"
                  disabled={busy}
                  onClick={() => act("approve", { callId: a.callId })}
                >
                  Approve
                </button>
                <button
                  type="button"
                  class="deny"
                  disabled={busy}
                  onClick={() =>
                    act("deny", { callId: a.callId, reason: "denied from the dashboard" })
                  }
                >
                  Deny
                </button>
              </div>
            </div>
          ))}
        </section>
      )}
      <div class="grid top-grid">
        <section class="card chart-card">
          <h3>
            Statechart <span class="muted">· {h.state}</span>
          </h3>
          {machine ? (
            <Statechart machine={machine} state={h.state} />
          ) : (
            <p class="muted">Loading…</p>
          )}
        </section>
        <section class="card notes">
          <h3>Progress</h3>
          <p class="progress">{detail?.progress || <span class="muted">none yet</span>}</p>
          <h3>Last assessment</h3>
          <p class="assessment">
            {detail?.lastAssessment?.assessment ?? <span class="muted">none yet</span>}
          </p>
          <h3>Last plan</h3>
          {detail?.lastPlan?.steps.length ? (
            <ol class="plan">
              {detail.lastPlan.steps.map((s, i) => (
                <li key={i}>{s}</li>
              ))}
            </ol>
          ) : (
            <p class="muted">none yet</p>
          )}
          <h3>Last result</h3>
          <p class="result">{detail?.lastResult ?? <span class="muted">none yet</span>}</p>
        </section>
      </div>
      <div class="grid plots">
        {rows.length === 0 && (
          <section class="plot">
            <h3>Tokens and cost</h3>
            <p class="muted">Plotted once a tick has finished.</p>
          </section>
        )}
        {rows.length > 0 && (
          <Plot
            title="Tokens"
            ticks={series.ticks}
            perTick={series.tokens}
            total={series.totalTokens}
            format={formatTokens}
          />
        )}
        {rows.length > 0 && series.hasCost && (
          <Plot
            title="Cost (USD)"
            ticks={series.ticks}
            perTick={series.cost}
            total={series.totalCost}
            format={(v) => formatCost(v)}
          />
        )}
        {rows.length > 0 && !series.hasCost && (
          <section class="plot">
            <h3>Cost</h3>
            <p class="muted">
              No prices set (<code>--price-input</code>, <code>--price-output</code>).
            </p>
          </section>
        )}
      </div>
      <section class="card">
        <h3>Ticks</h3>
        {rows.length === 0 ? (
          <p class="muted">No tick has finished yet.</p>
        ) : (
          <table class="timeline">
            <thead>
              <tr>
                <th class="num">#</th>
                <th>Started</th>
                <th>Outcome</th>
                <th>Wake</th>
                <th class="num">Duration</th>
                <th class="num">Tokens</th>
                <th>Tools</th>
                <th>Result</th>
              </tr>
            </thead>
            <tbody>
              {[...rows].reverse().map((r) => (
                <tr key={r.tick} data-tick={r.tick}>
                  <td class="num" data-label="#">
                    {r.tick}
                  </td>
                  <td data-label="Started">{clockTime(r.startedAt)}</td>
                  <td data-label="Outcome">
                    <Outcome outcome={r.status} />
                  </td>
                  <td data-label="Wake">{r.wakeReason}</td>
                  <td class="num" data-label="Duration">
                    {formatDuration(r.durationMs)}
                  </td>
                  <td class="num" data-label="Tokens">
                    {formatTokens(r.tokens)}
                  </td>
                  <td data-label="Tools" class="tools">
                    {r.tools.length === 0 ? (
                      <span class="muted">none</span>
                    ) : (
                      r.tools.map((t, i) => (
                        <span key={i} class={`tool tool-${t.status}`}>
                          {t.name}
                        </span>
                      ))
                    )}
                  </td>
                  <td data-label="Result" class="summary">
                    {r.summary}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}

/** The whole page. */
export function App() {
  const [list, setList] = useState<HeartbeatSummary[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [offset, setOffset] = useState(0);
  const [now, setNow] = useState(Date.now());
  const [selected, setSelected] = useState<string | null>(selectedFromHash());
  const [detail, setDetail] = useState<HeartbeatDetail | null>(null);
  const [journal, setJournal] = useState<JournalEntry[]>([]);
  const [machine, setMachine] = useState<MachineResponse | null>(null);
  const [live, setLive] = useState<"connecting" | "live" | "reconnecting">("connecting");
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);
  const [busy, setBusy] = useState(false);
  const selectedRef = useRef(selected);
  selectedRef.current = selected;

  // A confirmation goes after a few seconds; an error stays until dismissed.
  useEffect(() => {
    if (!message || message.error) return;
    const timer = setTimeout(() => setMessage(null), 4000);
    return () => clearTimeout(timer);
  }, [message]);

  const report = useCallback((e: unknown) => {
    setMessage({ text: e instanceof Error ? e.message : String(e), error: true });
  }, []);

  const loadList = useCallback(async () => {
    try {
      const res = await api.list();
      setOffset(Date.parse(res.now) - Date.now());
      setList(res.heartbeats);
      setLoaded(true);
    } catch (e) {
      report(e);
    }
  }, [report]);

  // Detail and journal reloads are coalesced: a burst of events costs one request each.
  const pending = useRef<{ timer?: ReturnType<typeof setTimeout>; journal: boolean }>({
    journal: false,
  });
  const loadDetail = useCallback(
    (withJournal: boolean) => {
      pending.current.journal ||= withJournal;
      if (pending.current.timer) return;
      pending.current.timer = setTimeout(async () => {
        const id = selectedRef.current;
        const journalToo = pending.current.journal;
        pending.current = { journal: false };
        if (!id) return;
        try {
          const [d, j] = await Promise.all([api.detail(id), journalToo ? api.journal(id) : null]);
          if (selectedRef.current !== id) return;
          setDetail(d);
          if (j) setJournal(j.entries);
        } catch (e) {
          if (e instanceof RequestError && e.status === 404) setDetail(null);
          report(e);
        }
      }, 50);
    },
    [report],
  );

  useEffect(() => {
    const onHash = () => setSelected(selectedFromHash());
    addEventListener("hashchange", onHash);
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      removeEventListener("hashchange", onHash);
      clearInterval(timer);
    };
  }, []);

  useEffect(() => {
    loadList();
    return connectEvents({
      onOpen: () => {
        setLive("live");
        loadList();
        if (selectedRef.current) loadDetail(true);
      },
      onError: () => setLive("reconnecting"),
      onEvent: (type, data) => {
        const upsert = (s: HeartbeatSummary | undefined) => {
          if (!s) return;
          setList((old) => {
            const i = old.findIndex((x) => x.id === s.id);
            if (i < 0) return [...old, s];
            const next = old.slice();
            next[i] = s;
            return next;
          });
        };
        const id = (data as { id: string }).id;
        switch (type) {
          case "state":
          case "tick":
            upsert((data as { heartbeat: HeartbeatSummary }).heartbeat);
            break;
          case "heartbeat": {
            const e = data as { kind: string; id: string; heartbeat?: HeartbeatSummary };
            if (e.kind === "removed") setList((old) => old.filter((x) => x.id !== e.id));
            else upsert(e.heartbeat);
            break;
          }
          case "approval":
            loadList();
            break;
        }
        if (id === selectedRef.current && type !== "tool") {
          loadDetail(type === "tick" || type === "heartbeat");
        }
      },
    });
  }, [loadList, loadDetail]);

  useEffect(() => {
    setDetail(null);
    setJournal([]);
    if (!selected) return;
    if (!machine) api.machine().then(setMachine, report);
    loadDetail(true);
  }, [selected, machine, loadDetail, report]);

  const act = useCallback(
    async (action: string, body?: Record<string, unknown>) => {
      if (!selected) return;
      setBusy(true);
      try {
        await api.action(selected, action, body);
        setMessage(null);
        loadDetail(true);
      } catch (e) {
        report(e);
      } finally {
        setBusy(false);
      }
    },
    [selected, loadDetail, report],
  );

  const summary = list.find((h) => h.id === selected);
  const serverNow = now + offset;
  const totals = list.reduce(
    (acc, h) => ({
      tokens: acc.tokens + h.tokens,
      cost: h.costUsd === null ? acc.cost : (acc.cost ?? 0) + h.costUsd,
      approvals: acc.approvals + h.pendingApprovals,
    }),
    { tokens: 0, cost: null as number | null, approvals: 0 },
  );
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          ravenclaws
        </a>
        <span class="summary-line">
          {list.length} heartbeat{list.length === 1 ? "" : "s"} · {formatTokens(totals.tokens)}{" "}
          tokens
          {totals.cost !== null ? ` · ${formatCost(totals.cost)}` : ""}
          {totals.approvals > 0 ? ` · ${totals.approvals} waiting` : ""}
        </span>
        <span class={`live live-${live}`} data-live={live}>
          {live === "live" ? "live" : live === "connecting" ? "connecting…" : "reconnecting…"}
        </span>
      </header>
      {message && (
        <div
          class={`message${message.error ? " error" : ""}`}
          role={message.error ? "alert" : "status"}
        >
          <span>{message.text}</span>
          <button
            type="button"
            class="dismiss"
            aria-label="Dismiss"
            onClick={() => setMessage(null)}
          >
            ×
          </button>
        </div>
      )}
      <main>
        {selected ? (
          <>
            <nav class="crumbs">
              <a href="#/">← all heartbeats</a>
            </nav>
            <Detail
              summary={summary}
              detail={detail}
              journal={journal}
              machine={machine}
              now={serverNow}
              act={act}
              busy={busy}
            />
          </>
        ) : loaded ? (
          <Overview list={list} now={serverNow} />
        ) : (
          <p class="empty">Loading…</p>
        )}
      </main>
    </>
  );
}
