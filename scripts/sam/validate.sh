#!/usr/bin/env bash
# Validate the SAM application offline (no AWS credentials, no Docker):
#   1. JSON syntax of statemachine/*.asl.json and events/**/*.json; every ${...} of a state
#      machine definition is one of the template's DefinitionSubstitutions (and vice versa);
#      ASL structure: Next/Catch targets exist, all states reachable, States.ALL alone and last
#   2. sam validate --lint   (SAM translator + cfn-lint)
#   3. cfn-lint template.yaml, and cfn-lint's ASL schema (E3601) on each definition inlined
# sam-cli and cfn-lint come from their own venv (scripts/sam/install.sh).
# Usage: scripts/sam/validate.sh [template.yaml]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
TEMPLATE="${1:-template.yaml}"

log() { printf '[sam-validate] %s\n' "$*" >&2; }

BIN="$(bash "$ROOT/scripts/sam/install.sh" | tail -n 1)"
[[ -x "$BIN/sam" && -x "$BIN/cfn-lint" ]] || { log "ERROR: sam/cfn-lint missing in $BIN"; exit 1; }

# Offline and credential-free: a fixed region, no telemetry, no instance-metadata lookups,
# and no credentials or profile from the caller's environment.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

log "step 1/3: JSON files and state machine substitutions"
"$BIN/python" - "$TEMPLATE" <<'PY'
import glob, json, re, sys

import yaml


class CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _tag)
template = yaml.load(open(sys.argv[1]), Loader=CfnLoader)

errors = []
for path in sorted(glob.glob("events/**/*.json", recursive=True)) + sorted(glob.glob("statemachine/*.json")):
    try:
        json.load(open(path))
    except ValueError as exc:
        errors.append(f"{path}: invalid JSON: {exc}")

def check_asl(uri, asl):
    """Structural checks cfn-lint's schema does not make: targets exist, every state is
    reachable, error lists are well formed."""
    errs = []
    states = asl.get("States", {})

    def targets(st):
        out = [st["Next"]] if "Next" in st else []
        out += [c["Next"] for c in st.get("Catch", [])]
        out += [c["Next"] for c in st.get("Choices", [])]
        out += [st["Default"]] if "Default" in st else []
        return out

    if asl.get("StartAt") not in states:
        errs.append(f"{uri}: StartAt {asl.get('StartAt')!r} is not a state")
    for sname, st in states.items():
        for t in targets(st):
            if t not in states:
                errs.append(f"{uri}: {sname} -> {t!r} is not a state")
        terminal = st.get("Type") in ("Succeed", "Fail") or st.get("End") is True
        if not terminal and "Next" not in st and st.get("Type") != "Choice":
            errs.append(f"{uri}: {sname} has neither Next nor End")
        for kind in ("Retry", "Catch"):
            items = st.get(kind, [])
            for i, item in enumerate(items):
                eq = item.get("ErrorEquals", [])
                if not eq:
                    errs.append(f"{uri}: {sname}.{kind}[{i}] has an empty ErrorEquals")
                if "States.ALL" in eq and (len(eq) != 1 or i != len(items) - 1):
                    errs.append(f"{uri}: {sname}.{kind}[{i}]: States.ALL must be alone and last")
                if kind == "Retry" and item.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
                    errs.append(f"{uri}: {sname}.Retry[{i}]: bad JitterStrategy")
    seen, todo = set(), [asl.get("StartAt")]
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in states:
            continue
        seen.add(cur)
        todo.extend(targets(states[cur]))
    for unreachable in sorted(set(states) - seen):
        errs.append(f"{uri}: state {unreachable!r} is unreachable")
    return errs


for name, res in template["Resources"].items():
    if res.get("Type") != "AWS::Serverless::StateMachine":
        continue
    props = res["Properties"]
    uri = props.get("DefinitionUri")
    if not isinstance(uri, str):
        continue
    text = open(uri).read()
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
    known = set((props.get("DefinitionSubstitutions") or {}).keys())
    for missing in sorted(used - known):
        errors.append(f"{uri}: ${{{missing}}} is not in {name}.DefinitionSubstitutions")
    for unused in sorted(known - used):
        errors.append(f"{name}.DefinitionSubstitutions.{unused} is not used by {uri}")

    errors.extend(check_asl(uri, json.loads(text)))

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print("json + substitutions: ok")
PY

log "step 2/3: sam validate --lint ($("$BIN/sam" --version))"
"$BIN/sam" validate --lint --template "$TEMPLATE" --region us-east-1

log "step 3/3: cfn-lint $("$BIN/cfn-lint" --version | awk '{print $2}')"
"$BIN/cfn-lint" --regions us-east-1 -- "$TEMPLATE"
echo "cfn-lint: ok"

# cfn-lint does not open DefinitionUri files: lint each definition inlined in a scratch
# AWS::StepFunctions::StateMachine (schema check E3601), substitutions replaced by sample ARNs.
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
for asl in statemachine/*.asl.json; do
  [[ -e "$asl" ]] || continue
  "$BIN/python" - "$asl" "$SCRATCH/asl-template.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"\$\{([A-Za-z0-9_]+)\}", r"arn:aws:lambda:us-east-1:123456789012:function:\1", text)
json.dump({"AWSTemplateFormatVersion": "2010-09-09",
           "Resources": {"StateMachine": {"Type": "AWS::StepFunctions::StateMachine",
                                          "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/sfn",
                                                         "Definition": json.loads(text)}}}},
          open(sys.argv[2], "w"), indent=1)
PY
  "$BIN/cfn-lint" --regions us-east-1 -- "$SCRATCH/asl-template.json" || { log "ERROR: $asl fails cfn-lint's state machine schema"; exit 1; }
  echo "cfn-lint (inlined $asl): ok"
done

log "all checks passed"
