# Sourced by the bench scripts that run one `weir serve` (checkpoint.sh,
# savepoint.sh): builds the binary if missing, starts it on free-ish ports
# with a fresh data folder that is removed on exit, waits until it answers,
# and defines the helpers the scripts share:
#   sql TEXT       run TEXT in psql, rows unaligned
#   metric NAME    the job per_key's value of the Prometheus metric NAME
# Set before sourcing: nothing required; WEIR or PROFILE (default dist) pick
# the binary; WEIR_ARGS adds flags to `weir serve`.
WEIR=${WEIR:-target/${PROFILE:-dist}/weir}
[ -x "$WEIR" ] || cargo build --profile "${PROFILE:-dist}" --bin weir

dir=$(mktemp -d)
port=$(( 20000 + RANDOM % 20000 ))
http=$(( port + 1 ))
# shellcheck disable=SC2086 # WEIR_ARGS is a list of flags
"$WEIR" serve --data-dir "$dir/data" --pg-addr "127.0.0.1:$port" --http-addr "127.0.0.1:$http" \
  --log warn ${WEIR_ARGS:-} &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
sql() { psql -X -q -t -A -h 127.0.0.1 -p "$port" -U weir -d weir -c "$1"; }
until sql 'SELECT 1' >/dev/null 2>&1; do sleep 0.05; done
metric() { curl -s "127.0.0.1:$http/metrics" | awk -v m="$1" '$1 ~ "^"m"\\{job=\"per_key\"\\}" {print $2}'; }
