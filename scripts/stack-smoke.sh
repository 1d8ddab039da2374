#!/usr/bin/env bash
# End-to-end smoke test of the compose stack, for a machine with a Docker engine (and curl and
# python3 on the host; no aws cli needed). It cannot run on the project's CI machines (no engine):
# tests/test_compose.py checks the compose file, and this script's --list, there instead.
#
#   bash scripts/stack-smoke.sh            bring the stack up (--build) and check it; leave it up
#   bash scripts/stack-smoke.sh --down     ... then tear it down with its volumes (docker compose down -v)
#   bash scripts/stack-smoke.sh --lambda-only   skip phase 2 (the scheduler)
#   bash scripts/stack-smoke.sh --list     print what would be checked, touch nothing
#
# Prints one line per check, PASS or FAIL, and exits 1 if any check failed.
#
# Phase 1, Lambdas (the default mode): every service healthy, the one-shots (deploy, es-setup,
#   kibana-setup) completed, the four functions and their EventBridge rules exist in LocalStack,
#   log objects appear under s3://BUCKET/logs/<handler>/ for all four handlers, Elasticsearch
#   holds `order` and `inventory` documents (a sample: _id = event_id), Prometheus returns the
#   seed metrics, the Kibana dashboard, its Lens panels and the data views exist. The rules fire
#   on the wall clock: order_tick each minute, restock every 5, alert every 15 minutes;
#   forecast's rule fires hourly, so unless SMOKE_WAIT_FORECAST_RULE=1 the script invokes the
#   forecast function once itself (a Scheduled Event for the current hour) when the other three
#   have run.
# Phase 2, scheduler (COMPOSE_PROFILES=scheduler, business time SMOKE_SPEED x the wall clock):
#   the functions are gone (the guard), the scheduler is healthy, and Elasticsearch gets
#   `reorder_alert` and `restock` documents. In Lambda mode those need real time: on the default
#   catalog the first reorder alert comes ~9 business hours after the store starts and the first
#   restock ~3.4 business days after (lead times of 24-72 h); at SMOKE_SPEED=1440 (a business day
#   per wall minute) that is ~25 s and ~4 min. Afterwards the store's business clock is days ahead
#   of the wall clock, so Lambdas would skip ticks on it: `docker compose down -v` (or --down)
#   before going back to Lambda mode.
#
# Deadlines (seconds): SMOKE_HEALTH_DEADLINE (900), SMOKE_LAMBDA_DEADLINE (1200),
# SMOKE_SCHEDULER_DEADLINE (1200); SMOKE_SPEED (1440); SMOKE_POLL (15).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HEALTH_DEADLINE="${SMOKE_HEALTH_DEADLINE:-900}"
LAMBDA_DEADLINE="${SMOKE_LAMBDA_DEADLINE:-1200}"
SCHEDULER_DEADLINE="${SMOKE_SCHEDULER_DEADLINE:-1200}"
SPEED="${SMOKE_SPEED:-1440}"
POLL="${SMOKE_POLL:-15}"
WAIT_FORECAST_RULE="${SMOKE_WAIT_FORECAST_RULE:-0}"

NAME=stockpulse
BUCKET="${STOCKPULSE_BUCKET:-stockpulse}"
HANDLERS=(order_tick restock forecast alert)
LONG_RUNNING=(localstack pushgateway prometheus alertmanager elasticsearch kibana filebeat metricbeat)
ONE_SHOT=(deploy es-setup kibana-setup)
LAMBDA_EVENT_TYPES=(order inventory)
SCHEDULER_EVENT_TYPES=(reorder_alert restock)
# The seed metrics (predicted_stockout_hours is absent while no stockout is projected within the
# 7-day horizon, so its always-present companion stockout_within_horizon is checked instead).
METRICS=(inventory_level_units orders_per_minute orders_total demand_forecast_units
         reorder_events_total processing_latency_seconds_bucket stockout_within_horizon
         handler_last_success_timestamp_seconds)
SAVED_OBJECTS=infra/kibana/saved_objects.ndjson

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

DOWN=false
LIST=false
SCHEDULER_PHASE=true
BUILD=(--build)
for arg in "$@"; do
    case "$arg" in
        --down) DOWN=true ;;
        --list) LIST=true ;;
        --lambda-only) SCHEDULER_PHASE=false ;;
        --no-build) BUILD=() ;;
        -h|--help) usage; exit 0 ;;
        *) echo "stack-smoke: unknown argument $arg (see --help)" >&2; exit 2 ;;
    esac
done

function_name() { printf '%s-%s' "$NAME" "${1//_/-}"; }

dashboard_id() {
    python3 -c 'import json, sys
print(next(o["id"] for o in map(json.loads, filter(str.strip, sys.stdin)) if o["type"] == "dashboard"))' \
        < "$SAVED_OBJECTS"
}

data_view_ids() {
    python3 -c 'import json, sys
print(" ".join(o["id"] for o in map(json.loads, filter(str.strip, sys.stdin)) if o["type"] == "index-pattern"))' \
        < "$SAVED_OBJECTS"
}

if [ "$LIST" = true ]; then
    functions=()
    for h in "${HANDLERS[@]}"; do functions+=("$(function_name "$h")"); done
    echo "bucket: $BUCKET"
    echo "handlers: ${HANDLERS[*]}"
    echo "functions: ${functions[*]}"
    echo "services: ${LONG_RUNNING[*]}"
    echo "one-shot: ${ONE_SHOT[*]}"
    echo "event-types: ${LAMBDA_EVENT_TYPES[*]} ${SCHEDULER_EVENT_TYPES[*]}"
    echo "metrics: ${METRICS[*]}"
    echo "dashboard: $(dashboard_id)"
    echo "data-views: $(data_view_ids)"
    exit 0
fi

for tool in docker curl python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "stack-smoke: needs $tool on PATH" >&2; exit 2; }
done
docker compose version >/dev/null 2>&1 || { echo "stack-smoke: needs the Docker Compose plugin (docker compose)" >&2; exit 2; }

FAILED=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILED=$((FAILED + 1)); }
note() { printf '....  %s\n' "$*" >&2; }

compose() { docker compose "$@"; }
teardown() {
    if [ "$DOWN" = true ]; then
        note "docker compose down -v"
        COMPOSE_PROFILES=scheduler compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
}
trap teardown EXIT

# url SERVICE PORT: the host address compose published the container port on
url() { printf 'http://%s' "$(compose port "$1" "$2" | tail -n 1)"; }
awslocal() { compose exec -T localstack awslocal "$@"; }

# until_ok DEADLINE_SECONDS COMMAND...: run COMMAND every $POLL s until it succeeds or time is up
until_ok() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep "$POLL"
    done
}

container_state() {  # SERVICE -> "running healthy" | "exited 0" | ...
    local id
    id="$(compose ps -a -q "$1" 2>/dev/null | head -n 1)"
    [ -n "$id" ] || { echo missing; return; }
    docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.ExitCode}}{{end}}' "$id"
}
is_healthy() { [ "$(container_state "$1")" = "running healthy" ]; }
is_completed() { [ "$(container_state "$1")" = "exited 0" ]; }

wait_services() {  # wait for every LONG_RUNNING service healthy, every ONE_SHOT exited 0
    local svc deadline=$((SECONDS + HEALTH_DEADLINE))
    for svc in "$@"; do
        if until_ok $((deadline - SECONDS)) is_healthy "$svc"; then
            pass "$svc is healthy"
        else
            fail "$svc is not healthy after ${HEALTH_DEADLINE}s: $(container_state "$svc") (docker compose logs $svc)"
        fi
    done
}
wait_one_shots() {
    local svc deadline=$((SECONDS + HEALTH_DEADLINE))
    for svc in "$@"; do
        if until_ok $((deadline - SECONDS)) is_completed "$svc"; then
            pass "$svc completed"
        else
            fail "$svc did not complete: $(container_state "$svc") (docker compose logs $svc)"
        fi
    done
}

functions_present() {  # prints the stockpulse functions LocalStack has
    awslocal lambda list-functions --query 'Functions[].FunctionName' --output text 2>/dev/null \
        | tr '\t' '\n' | grep "^$NAME-" || true
}

has_log_object() {
    local key
    key="$(awslocal s3api list-objects-v2 --bucket "$BUCKET" --prefix "logs/$1/" --max-items 1 \
        --query 'Contents[0].Key' --output text 2>/dev/null | head -n 1)"
    [ -n "$key" ] && [ "$key" != None ]
}

es_count() {  # TYPE -> number of documents of that type in filebeat-*
    curl -fsS -H 'Content-Type: application/json' "$(url elasticsearch 9200)/filebeat-*/_count" \
        -d "{\"query\": {\"term\": {\"type\": \"$1\"}}}" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin).get("count", 0))' 2>/dev/null || echo 0
}
es_has() { [ "$(es_count "$1")" -gt 0 ]; }

es_ids_are_event_ids() {  # TYPE -> "<n> <m>": n of a sample of documents, m of them with _id == event_id
    curl -fsS -H 'Content-Type: application/json' "$(url elasticsearch 9200)/filebeat-*/_search" \
        -d "{\"size\": 50, \"query\": {\"term\": {\"type\": \"$1\"}}, \"_source\": [\"event_id\"]}" 2>/dev/null \
        | python3 -c 'import json, sys
hits = json.load(sys.stdin)["hits"]["hits"]
print(len(hits), sum(h["_id"] == h["_source"].get("event_id") for h in hits))' 2>/dev/null || echo "0 0"
}

prom_series() {  # PROMQL -> number of series in the instant vector
    curl -fsS --get --data-urlencode "query=$1" "$(url prometheus 9090)/api/v1/query" 2>/dev/null \
        | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]["result"]))' 2>/dev/null || echo 0
}
prom_has() { [ "$(prom_series "$1")" -gt 0 ]; }

invoke_forecast() {  # one Scheduled Event for the current hour, as the hourly rule would send
    local fn event
    fn="$(function_name forecast)"
    event="$(python3 -c 'import json, datetime as d
t = d.datetime.now(d.timezone.utc).replace(minute=0, second=0, microsecond=0)
print(json.dumps({"version": "0", "id": "stack-smoke-" + t.strftime("%Y%m%dT%H%M%SZ"),
    "detail-type": "Scheduled Event", "source": "aws.events", "account": "000000000000",
    "time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:000000000000:rule/'"$fn"'"], "detail": {}}))')"
    printf '%s' "$event" | compose exec -T localstack sh -c 'cat > /tmp/stack-smoke-event.json'
    # a cold forecast (numpy and scipy imports, the fit) can outlast the CLI's default 60 s read timeout
    awslocal lambda invoke --function-name "$fn" --payload fileb:///tmp/stack-smoke-event.json \
        --cli-read-timeout 600 /tmp/stack-smoke-out.json --query FunctionError --output text 2>&1 | grep -qx None
}

# ---------------------------------------------------------------------------------------------
note "phase 1: Lambdas — docker compose up -d ${BUILD[*]}"
export COMPOSE_PROFILES=""
compose up -d "${BUILD[@]}"

wait_services "${LONG_RUNNING[@]}"
wait_one_shots "${ONE_SHOT[@]}"

present="$(functions_present)"
for h in "${HANDLERS[@]}"; do
    fn="$(function_name "$h")"
    if grep -qx "$fn" <<<"$present"; then pass "function $fn exists"; else fail "function $fn missing in LocalStack"; fi
    if awslocal events describe-rule --name "$fn" --query ScheduleExpression --output text >/dev/null 2>&1; then
        pass "rule $fn exists ($(awslocal events describe-rule --name "$fn" --query ScheduleExpression --output text))"
    else
        fail "rule $fn missing in LocalStack"
    fi
done

note "waiting up to ${LAMBDA_DEADLINE}s for the rules to fire (order_tick 1m, restock 5m, alert 15m)"
rule_driven=(order_tick restock alert)
[ "$WAIT_FORECAST_RULE" = 1 ] && rule_driven+=(forecast)
all_logged() { local h; for h in "$@"; do has_log_object "$h" || return 1; done; }
deadline=$((SECONDS + LAMBDA_DEADLINE))
until_ok "$LAMBDA_DEADLINE" all_logged "${rule_driven[@]}" || true
for h in "${rule_driven[@]}"; do
    if has_log_object "$h"; then pass "$h ran: objects under s3://$BUCKET/logs/$h/"
    else fail "$h: no object under s3://$BUCKET/logs/$h/ after ${LAMBDA_DEADLINE}s (docker compose logs localstack)"; fi
done
if [ "$WAIT_FORECAST_RULE" != 1 ]; then
    if invoke_forecast && until_ok 60 has_log_object forecast; then
        pass "forecast ran (invoked once by this script; its rule fires hourly): objects under s3://$BUCKET/logs/forecast/"
    else
        fail "forecast: invocation failed or wrote no object under s3://$BUCKET/logs/forecast/"
    fi
fi

remaining=$((deadline - SECONDS)); [ "$remaining" -gt 120 ] || remaining=120
for t in "${LAMBDA_EVENT_TYPES[@]}"; do
    if until_ok "$remaining" es_has "$t"; then pass "Elasticsearch holds $(es_count "$t") '$t' documents"
    else fail "Elasticsearch holds no '$t' documents (docker compose logs filebeat)"; fi
    read -r sampled same <<<"$(es_ids_are_event_ids "$t")"
    if [ "$sampled" -gt 0 ] && [ "$same" = "$sampled" ]; then pass "'$t' documents: _id = event_id ($same of $sampled sampled)"
    else fail "'$t' documents: only $same of $sampled sampled have _id = event_id (infra/filebeat/filebeat.yml processors)"; fi
done
for m in "${METRICS[@]}"; do
    if until_ok 120 prom_has "$m"; then pass "Prometheus returns $m ($(prom_series "$m") series)"
    else fail "Prometheus returns no $m"; fi
done
if until_ok 60 prom_has "time() - handler_last_success_timestamp_seconds < 3600"; then
    pass "Prometheus: handlers succeeded within the last hour"
else
    fail "Prometheus: no handler success within the last hour"
fi

kibana="$(url kibana 5601)"
dashboard="$(dashboard_id)"
if curl -fsS -o /dev/null "$kibana/api/saved_objects/dashboard/$dashboard"; then pass "Kibana dashboard $dashboard exists ($kibana/app/dashboards#/view/$dashboard)"
else fail "Kibana dashboard $dashboard missing (docker compose logs kibana-setup)"; fi
panels="$(python3 -c 'import json, sys
print(" ".join(o["id"] for o in map(json.loads, filter(str.strip, sys.stdin)) if o["type"] == "lens"))' < "$SAVED_OBJECTS")"
for panel in $panels; do
    if curl -fsS -o /dev/null "$kibana/api/saved_objects/lens/$panel"; then pass "Kibana Lens panel $panel exists"
    else fail "Kibana Lens panel $panel missing (docker compose logs kibana-setup)"; fi
done
for view in $(data_view_ids); do
    if curl -fsS -o /dev/null "$kibana/api/saved_objects/index-pattern/$view"; then pass "Kibana data view $view exists"
    else fail "Kibana data view $view missing"; fi
done

# ---------------------------------------------------------------------------------------------
if [ "$SCHEDULER_PHASE" = true ]; then
    note "phase 2: scheduler — COMPOSE_PROFILES=scheduler STOCKPULSE_SPEED=$SPEED docker compose up -d"
    export COMPOSE_PROFILES=scheduler
    STOCKPULSE_SPEED="$SPEED" compose up -d
    wait_one_shots deploy
    wait_services scheduler
    if [ -z "$(functions_present)" ]; then pass "guard: no stockpulse function left in LocalStack while the scheduler runs"
    else fail "guard: functions still deployed next to the scheduler: $(functions_present | tr '\n' ' ')"; fi

    note "waiting up to ${SCHEDULER_DEADLINE}s for reorder alerts (~9 business h) and restocks (~3.4 business days)"
    for t in "${SCHEDULER_EVENT_TYPES[@]}"; do
        if until_ok "$SCHEDULER_DEADLINE" es_has "$t"; then pass "Elasticsearch holds $(es_count "$t") '$t' documents"
        else fail "Elasticsearch holds no '$t' documents after ${SCHEDULER_DEADLINE}s (docker compose logs scheduler filebeat)"; fi
    done
    if until_ok 120 prom_has "sum(reorder_events_total) > 0"; then pass "Prometheus: reorder_events_total > 0"
    else fail "Prometheus: reorder_events_total is still 0"; fi
    if until_ok 120 prom_has "sum(received_units_total) > 0"; then pass "Prometheus: received_units_total > 0"
    else fail "Prometheus: received_units_total is still 0"; fi
    [ "$DOWN" = true ] || note "the store's business clock is now ahead of the wall clock: docker compose down -v before Lambda mode again"
fi

if [ "$FAILED" -gt 0 ]; then
    echo "stack-smoke: $FAILED check(s) failed"
    exit 1
fi
echo "stack-smoke: all checks passed"
