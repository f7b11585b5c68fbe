/**
 * The `[tools]` settings: flags, environment, ravenclaws.toml, user config;
 * the list type; errors naming key, source and expected type.
 */
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../src/errors.js";
import { type ConfigSources, resolveRunSettings } from "../../../src/services/config.js";
import { splitList } from "../../../src/services/tools/ruleSyntax.js";

const TOML = "/project/ravenclaws.toml";
const USER = "/home/u/.config/ravenclaws/config.json";

function resolve(partial: Partial<ConfigSources>) {
  return resolveRunSettings({ flags: {}, env: {}, ...partial });
}

function error(partial: Partial<ConfigSources>): ConfigError {
  try {
    resolve(partial);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("[tools] settings", () => {
  it("defaults: workspace-write, no rules, no web, 60 s shell timeout", () => {
    expect(resolve({}).settings).toMatchObject({
      toolMode: "workspace-write",
      toolDeny: [],
      toolAsk: [],
      toolAllow: [],
      allowWeb: false,
      allowedHosts: [],
      envAllow: [],
      shellTimeout: 60,
    });
  });

  it("reads the [tools] section of ravenclaws.toml", () => {
    const { settings, sources } = resolve({
      toml: {
        path: TOML,
        data: {
          tools: {
            mode: "read-only",
            deny: ["shell(git push*)", "write(src/{a,b}/**)"],
            ask: ["shell(npm publish*)"],
            allow: ["shell(npm test*)"],
            allow_web: true,
            allowed_hosts: ["docs.example.com", "*.example.org"],
            env_allow: ["NPM_TOKEN"],
            shell_timeout_secs: 120,
          },
        },
      },
    });
    expect(settings).toMatchObject({
      toolMode: "read-only",
      toolDeny: ["shell(git push*)", "write(src/{a,b}/**)"],
      toolAsk: ["shell(npm publish*)"],
      toolAllow: ["shell(npm test*)"],
      allowWeb: true,
      allowedHosts: ["docs.example.com", "*.example.org"],
      envAllow: ["NPM_TOKEN"],
      shellTimeout: 120,
    });
    expect(sources.toolDeny).toBe(`${TOML} [tools] deny`);
  });

  it("takes flags (arrays, comma lists) over the environment over the file over the user config", () => {
    const toml = { path: TOML, data: { tools: { deny: ["read(**/*.env)"], mode: "full" } } };
    const user = {
      path: USER,
      data: { toolDeny: ["edit"], envAllow: ["A"], toolMode: "read-only" },
    };
    const fromFlags = resolve({
      flags: { toolDeny: ["shell(rm *),write(dist/**)", "fetch(*.evil.example)"], allowWeb: true },
      env: { RAVENCLAWS_TOOLS_DENY: "shell(sudo *)" },
      toml,
      user,
    });
    // Deny (and ask) rules add up across sources; other settings take the first source.
    expect(fromFlags.settings.toolDeny).toEqual([
      "shell(rm *)",
      "write(dist/**)",
      "fetch(*.evil.example)",
      "shell(sudo *)",
      "read(**/*.env)",
      "edit",
    ]);
    expect(fromFlags.sources.toolDeny).toBe(
      `option --deny; environment variable RAVENCLAWS_TOOLS_DENY; ${TOML} [tools] deny; user config ${USER} (toolDeny)`,
    );
    expect(fromFlags.settings.allowWeb).toBe(true);
    expect(fromFlags.settings.toolMode).toBe("full");
    expect(fromFlags.settings.envAllow).toEqual(["A"]);

    const fromEnv = resolve({
      env: {
        RAVENCLAWS_TOOLS_DENY: "shell(sudo *), write(/etc/**)",
        RAVENCLAWS_ALLOWED_HOSTS: "a.example,b.example",
        RAVENCLAWS_TOOL_MODE: "read-only",
        RAVENCLAWS_SHELL_TIMEOUT: "5",
        RAVENCLAWS_ALLOW_WEB: "yes",
      },
      toml,
    });
    expect(fromEnv.settings).toMatchObject({
      toolDeny: ["shell(sudo *)", "write(/etc/**)", "read(**/*.env)"],
      allowedHosts: ["a.example", "b.example"],
      toolMode: "read-only",
      shellTimeout: 5,
      allowWeb: true,
    });
    expect(resolve({ user }).settings.toolDeny).toEqual(["edit"]);
  });

  it("takes allow rules and allowed hosts from the first source only", () => {
    const { settings } = resolve({
      flags: { toolAllow: ["shell(make)"] },
      toml: { path: TOML, data: { tools: { allow: ["shell"], allowed_hosts: ["a.example"] } } },
      user: { path: USER, data: { allowedHosts: ["b.example"] } },
    });
    expect(settings.toolAllow).toEqual(["shell(make)"]);
    expect(settings.allowedHosts).toEqual(["a.example"]);
  });

  it("names the source of the bad item of a merged list", () => {
    const bad = error({
      flags: { toolDeny: ["shell(ls)"] },
      toml: { path: TOML, data: { tools: { deny: ["write(x)", "oops"] } } },
    });
    expect(bad.source).toBe(`${TOML} [tools] deny`);
    expect(bad.message).toMatch(
      /^\/project\/ravenclaws\.toml \[tools\] deny: must be rules .* \(got "oops"\)\.$/,
    );
  });

  it("names key, source and expected value for a bad mode, rule, host, list or timeout", () => {
    const mode = error({ flags: { toolMode: "yolo" } });
    expect(mode.key).toBe("toolMode");
    expect(mode.source).toBe("option --tool-mode");
    expect(mode.message).toBe(
      'option --tool-mode: must be one of "read-only", "workspace-write", "full" (got "yolo").',
    );

    const rule = error({ toml: { path: TOML, data: { tools: { deny: ["rm -rf"] } } } });
    expect(rule.key).toBe("toolDeny");
    expect(rule.message).toContain(
      `${TOML} [tools] deny: must be rules written KIND or KIND(PATTERN)`,
    );
    expect(rule.message).toContain('(got "rm -rf")');

    const notList = error({ toml: { path: TOML, data: { tools: { allow: [1, 2] } } } });
    expect(notList.message).toBe(
      `${TOML} [tools] allow: must be an array of strings, got the array [1,2].`,
    );

    const host = error({ env: { RAVENCLAWS_ALLOWED_HOSTS: "https://example.com/x" } });
    expect(host.source).toBe("environment variable RAVENCLAWS_ALLOWED_HOSTS");
    expect(host.message).toContain("must be host names such as example.com");

    const envName = error({ flags: { envAllow: ["NOT-A-NAME"] } });
    expect(envName.message).toContain("must be variable names");

    const timeout = error({ toml: { path: TOML, data: { tools: { shell_timeout_secs: 0 } } } });
    expect(timeout.message).toBe(
      `${TOML} [tools] shell_timeout_secs: must be more than 0 seconds (got 0).`,
    );

    const web = error({ toml: { path: TOML, data: { tools: { allow_web: "maybe" } } } });
    expect(web.message).toContain("must be a boolean (true or false");
  });
});

describe("splitList", () => {
  it("splits at top-level commas only, trimming and dropping empty items", () => {
    expect(splitList("shell(ls), write(src/{a,b}/**),, fetch([::1]) ,")).toEqual([
      "shell(ls)",
      "write(src/{a,b}/**)",
      "fetch([::1])",
    ]);
    expect(splitList("shell(echo a,b)")).toEqual(["shell(echo a,b)"]);
    expect(splitList("")).toEqual([]);
  });
});
