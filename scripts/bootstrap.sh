#!/usr/bin/env bash
# Tessera bootstrap: everything behind `make run`, `make test` and friends.
#
#   bash scripts/bootstrap.sh run|test|lint|migrate|bench|clean
#
# Each subcommand installs what is missing (apt, then .venv), makes sure PostgreSQL/PostGIS and
# Redis answer at DATABASE_URL / REDIS_URL (starting throwaway instances under .local/ when nothing
# answers on this machine), then does its job. It stops the throwaway services it started itself
# when it exits; it never touches the system's own services. See docs/development.md.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LOCAL="$ROOT/.local"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

DEFAULT_DATABASE_URL="postgis://postgres@127.0.0.1:5432/tessera"
DEFAULT_REDIS_URL="redis://127.0.0.1:6379/0"
# Used only when the defaults point at a server on this machine that will not let us in
# (Debian's own cluster wants a password on 127.0.0.1): a throwaway instance on these ports instead.
FALLBACK_PG_PORT="${TESSERA_FALLBACK_PG_PORT:-55432}"
FALLBACK_REDIS_PORT="${TESSERA_FALLBACK_REDIS_PORT:-56379}"

# The pure cores that mypy checks; missing ones are skipped.
MYPY_PATHS=(territories/optimizer territories/geodata.py territories/rules.py quotas/allocation.py analytics/metrics.py)

# --------------------------------------------------------------------------------------------
# Output, errors and clean-up

STEP="start"
STARTED_PG=""      # data directory of a throwaway PostgreSQL this invocation started
STARTED_REDIS=""   # pid file of a throwaway Redis this invocation started
CHILD_PGIDS=()     # process groups of `run`'s web/worker/beat
declare -A NAMES=() # their names, by process group
T0=$(date +%s%N)

say() { printf 'tessera: %s\n' "$*"; }
warn() { printf 'tessera: warning: %s\n' "$*" >&2; }
die() {
    printf 'tessera: error during %s: %s\n' "$STEP" "$*" >&2
    exit 1
}
step() { STEP="$1"; }
elapsed() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1fs", (b - a) / 1e9 }'; }

on_err() {
    local rc=$1 line=$2 cmd=$3
    # Report once, from the top-level shell (command substitutions inherit the trap).
    if ((BASH_SUBSHELL == 0)); then
        printf 'tessera: FAILED during %s: `%s` exited with %s (scripts/bootstrap.sh line %s)\n' \
            "$STEP" "$cmd" "$rc" "$line" >&2
    fi
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

stop_children() {
    local pgid alive
    ((${#CHILD_PGIDS[@]})) || return 0
    say "stopping web server, worker and beat"
    for pgid in "${CHILD_PGIDS[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    # Celery finishes the task in hand on TERM (warm shutdown); give everything 15 s.
    for _ in $(seq 150); do
        alive=0
        for pgid in "${CHILD_PGIDS[@]}"; do kill -0 -- "-$pgid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pgid in "${CHILD_PGIDS[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
    CHILD_PGIDS=()
}

on_exit() {
    local rc=$?
    trap - ERR INT TERM
    set +e
    stop_children
    if [[ -n $STARTED_REDIS ]]; then stop_redis "$STARTED_REDIS"; fi
    if [[ -n $STARTED_PG ]]; then stop_pg "$STARTED_PG"; fi
    # Ctrl-C is how one stops `make run`: that is a normal end, not an error.
    if [[ $STEP == serving && $rc == 130 ]]; then
        say "stopped"
        rc=0
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------------------------
# System packages (apt)

if ((EUID == 0)); then SUDO=(); else SUDO=(sudo); fi
APT_UPDATED="${TESSERA_APT_UPDATED:-}"

apt_update_once() {
    [[ -n $APT_UPDATED ]] && return 0
    say "apt-get update"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
}

apt_install() {
    say "apt-get install --no-install-recommends $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_apt() {
    command -v apt-get >/dev/null ||
        die "missing: $*. This script installs them with apt (Debian/Ubuntu); install them yourself here."
    if ((EUID != 0)) && ! command -v sudo >/dev/null; then
        die "missing: $*. Installing them needs root: run as root or install sudo."
    fi
}

# A Python Tessera supports: $PYTHON, else python3.11, python3.12, python3.
find_python() {
    local c
    for c in ${PYTHON:-} python3.11 python3.12 python3; do
        if command -v "$c" >/dev/null &&
            "$c" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

venv_ok() {
    [[ -x $PY ]] && "$PY" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null
}

# Highest PostgreSQL major whose server is installed (Debian layout), empty if none.
pg_major_installed() {
    local d majors=()
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x $d ]] && majors+=("$(basename "$(dirname "$(dirname "$d")")")")
    done
    ((${#majors[@]})) && printf '%s\n' "${majors[@]}" | sort -n | tail -1
    return 0
}

# Pipes below use `grep >/dev/null`, not `grep -q`: under pipefail an early-exiting grep -q makes the
# writer die of SIGPIPE and the whole test read as false, at random.
gdal_present() {
    [[ -n ${GDAL_LIBRARY_PATH:-} ]] && return 0
    { /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep 'libgdal\.so' >/dev/null
}

# ensure_system MODE: MODE is "python" (a Python for .venv), "services" (also PostgreSQL/PostGIS,
# Redis, GDAL) or "test" (also Chromium).
ensure_system() {
    local mode=$1 pkgs=() want_pg="" want_gdal="" pgmajor pkg
    step "checking system packages"
    if ! venv_ok; then
        if ! find_python >/dev/null; then
            pkgs+=(python3 python3-venv)
        elif ! "$(find_python)" -c 'import venv, ensurepip' 2>/dev/null; then
            pkgs+=(python3-venv)
        fi
    fi
    if [[ $mode != python ]]; then
        pgmajor=$(pg_major_installed)
        if [[ -z $pgmajor ]]; then
            want_pg=1
        elif [[ ! -f /usr/share/postgresql/$pgmajor/extension/postgis.control ]]; then
            pkgs+=("postgresql-$pgmajor-postgis-3")
        fi
        command -v redis-server >/dev/null && command -v redis-cli >/dev/null || pkgs+=(redis-server)
        gdal_present || want_gdal=1
    fi
    # Browser tests drive Debian's Chromium through Playwright; `playwright install` is never used.
    if [[ $mode == test && ! -x /usr/bin/chromium ]]; then pkgs+=(chromium); fi

    if ((${#pkgs[@]} == 0)) && [[ -z $want_pg$want_gdal ]]; then
        return 0 # everything present: no apt at all
    fi
    step "installing system packages"
    need_apt "${pkgs[*]} ${want_pg:+postgresql+postgis} ${want_gdal:+libgdal}"
    apt_update_once
    if [[ -n $want_pg ]]; then
        # The distribution's default major: Debian 12 -> 15, Ubuntu 22.04 -> 14, 24.04 -> 16.
        pgmajor=$(apt-cache depends postgresql 2>/dev/null | sed -nE 's/^ *Depends: postgresql-([0-9]+)$/\1/p' | head -1)
        if [[ -z $pgmajor ]]; then
            pgmajor=$(apt-cache pkgnames postgresql- 2>/dev/null |
                sed -nE 's/^postgresql-([0-9]+)-postgis-3$/\1/p' | sort -n | tail -1)
        fi
        [[ -n $pgmajor ]] || die "apt knows no postgresql-NN-postgis-3 package; install PostgreSQL with PostGIS yourself."
        pkgs+=("postgresql-$pgmajor" "postgresql-$pgmajor-postgis-3")
    fi
    if [[ -n $want_gdal ]]; then
        # The runtime library libgdal-dev depends on: libgdal32 (Debian 12), libgdal34t64 (Ubuntu 24.04), ...
        pkg=$(apt-cache depends libgdal-dev 2>/dev/null | sed -nE 's/^ *Depends: (libgdal[0-9]+[a-z0-9]*)$/\1/p' | head -1)
        if [[ -z $pkg ]]; then
            pkg=$(apt-cache pkgnames libgdal 2>/dev/null | grep -E '^libgdal[0-9]+(t64)?$' | sort -V | tail -1 || true)
        fi
        [[ -n $pkg ]] || die "apt knows no libgdalNN package; install GDAL yourself or set GDAL_LIBRARY_PATH."
        pkgs+=("$pkg")
    fi
    if [[ " ${pkgs[*]} " == *" chromium "* ]] && ! apt-cache policy chromium 2>/dev/null | grep 'Candidate: [^(]' >/dev/null; then
        # Ubuntu ships Chromium only as a snap; Playwright is pointed at /usr/bin/chromium.
        warn "apt has no chromium package here; the browser tests need /usr/bin/chromium and will fail"
        local keep=()
        for pkg in "${pkgs[@]}"; do [[ $pkg == chromium ]] || keep+=("$pkg"); done
        pkgs=("${keep[@]}")
    fi
    ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
}

# --------------------------------------------------------------------------------------------
# Python environment (.venv)

ensure_venv() {
    local base stamp want
    step "creating .venv"
    if ! venv_ok; then
        base=$(find_python) || die "Tessera needs Python 3.11 or 3.12 (set PYTHON=/path/to/python3.11)."
        if [[ -e $VENV ]]; then
            warn ".venv exists but its Python does not run or is not 3.11/3.12; recreating it"
            rm -rf "$VENV"
        fi
        say "creating .venv with $base"
        "$base" -m venv "$VENV"
    fi
    step "installing Python packages"
    stamp="$VENV/.tessera-installed"
    want="$(sha256sum pyproject.toml | cut -c1-64) dev"
    if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
        say "pip install -e '.[dev]' (a minute or two the first time; log in .venv/pip-install.log)"
        # pip's and setuptools' chatter goes to the log; it is shown only when the install fails.
        "$PY" -m pip install --disable-pip-version-check -e '.[dev]' >"$VENV/pip-install.log" 2>&1 ||
            die "pip install -e '.[dev]' failed: $(tail -25 "$VENV/pip-install.log")"
        printf '%s\n' "$want" >"$stamp"
    fi
}

# --------------------------------------------------------------------------------------------
# Connection settings

is_local_host() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 || $1 == '[::1]' ]]; }

# Split DATABASE_URL and REDIS_URL into shell variables (percent-decoded).
read_urls() {
    step "reading DATABASE_URL and REDIS_URL"
    DB_URL_DEFAULTED=""
    REDIS_URL_DEFAULTED=""
    if [[ -z ${DATABASE_URL:-} ]]; then DATABASE_URL=$DEFAULT_DATABASE_URL DB_URL_DEFAULTED=1; fi
    if [[ -z ${REDIS_URL:-} ]]; then REDIS_URL=$DEFAULT_REDIS_URL REDIS_URL_DEFAULTED=1; fi
    export DATABASE_URL REDIS_URL
    eval "$("$PY" - "$DATABASE_URL" "$REDIS_URL" <<'EOF'
import shlex
import sys
from urllib.parse import unquote, urlsplit

db, redis = urlsplit(sys.argv[1]), urlsplit(sys.argv[2])
out = {
    "DB_HOST": db.hostname or "127.0.0.1",
    "DB_PORT": str(db.port or 5432),
    "DB_USER": unquote(db.username or ""),
    "DB_PASSWORD": unquote(db.password or ""),
    "DB_NAME": unquote(db.path.lstrip("/")),
    "REDIS_HOST": redis.hostname or "127.0.0.1",
    "REDIS_PORT": str(redis.port or 6379),
    "REDIS_PASSWORD": unquote(redis.password or ""),
}
for key, value in out.items():
    print(f"{key}={shlex.quote(value)}")
EOF
)"
    [[ -n $DB_NAME ]] || die "DATABASE_URL=$DATABASE_URL names no database."
}

# Rewrite the port of a URL (for the fallback instances): url_with_port URL PORT
url_with_port() {
    "$PY" - "$1" "$2" <<'EOF'
import sys
from urllib.parse import urlsplit

url, port = urlsplit(sys.argv[1]), sys.argv[2]
userinfo, at, hostport = url.netloc.rpartition("@")
host = hostport if hostport.endswith("]") else hostport.rsplit(":", 1)[0]
print(url._replace(netloc=f"{userinfo}{at}{host}:{port}").geturl())
EOF
}

# --------------------------------------------------------------------------------------------
# PostgreSQL

pg_bin() { # pg_bin TOOL [MAJOR]: path of a PostgreSQL program
    local major=${2:-$(pg_major_installed)}
    if [[ -n ${PGBIN:-} ]]; then
        echo "$PGBIN/$1"
    elif [[ -n $major && -x /usr/lib/postgresql/$major/bin/$1 ]]; then
        echo "/usr/lib/postgresql/$major/bin/$1"
    else
        command -v "$1" || die "cannot find the PostgreSQL program $1."
    fi
}

# psql against the configured server: pgq DBNAME [psql args...]; SQL on stdin. -w: never prompt.
pgq() {
    local db=$1
    shift
    PGPASSWORD="$DB_PASSWORD" PGCONNECT_TIMEOUT=5 "$(pg_bin psql)" -X -w -q -At -v ON_ERROR_STOP=1 \
        -h "$DB_HOST" -p "$DB_PORT" ${DB_USER:+-U "$DB_USER"} -d "$db" "$@"
}

# Run a PostgreSQL program as the postgres OS user when we are root (initdb refuses root),
# from / so that an unreadable working directory does not matter.
as_pg() {
    if ((EUID == 0)); then
        (cd / && LC_ALL=C.UTF-8 runuser -u postgres -- "$@")
    else
        (cd / && LC_ALL=C.UTF-8 "$@")
    fi
}

# The folder of the throwaway cluster: .local/postgres, or a folder under /tmp (linked from
# .local/postgres) when the postgres user cannot reach the project (a clone under /root).
pg_dir() {
    local dir="$LOCAL/postgres" alt
    if [[ -L $dir ]]; then
        readlink -f "$dir"
        return
    fi
    mkdir -p "$dir"
    if ((EUID == 0)); then
        getent passwd postgres >/dev/null || die "there is no postgres OS user to run a throwaway PostgreSQL."
        chown postgres:postgres "$dir"
        chmod 700 "$dir"
        if ! as_pg test -w "$dir"; then
            alt="/tmp/tessera-postgres-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
            warn "the postgres user cannot reach $ROOT; the throwaway cluster lives in $alt instead"
            rmdir "$dir"
            install -d -o postgres -g postgres -m 700 "$alt"
            ln -s "$alt" "$dir"
            dir=$alt
        fi
    fi
    echo "$dir"
}

pg_port_answers() { # pg_port_answers PORT: 0 when a server accepts connections there (waits out a start-up)
    local rc
    for _ in $(seq 20); do
        rc=0
        "$(pg_bin pg_isready)" -q -h "$DB_HOST" -p "$1" -t 3 || rc=$?
        ((rc == 1)) || return "$rc" # 1 = rejecting connections: starting up or shutting down
        sleep 0.5
    done
    return 1
}

start_pg() { # start_pg PORT: a throwaway cluster in .local/postgres on this port
    local port=$1 dir data major listen=${DB_HOST#[}
    listen=${listen%]}
    step "starting a throwaway PostgreSQL on $DB_HOST:$port"
    is_local_host "$DB_HOST" || die "PostgreSQL at $DB_HOST:$port does not answer, and it is not on this machine."
    dir=$(pg_dir)
    data="$dir/data"
    if [[ ! -f $data/PG_VERSION ]]; then
        say "initdb $data"
        as_pg "$(pg_bin initdb)" -D "$data" -A trust -U "${DB_USER:-postgres}" -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || die "initdb failed: $(tail -5 "$dir/initdb.log")"
        # Throwaway data: trade durability for speed (the test database is rebuilt often).
        # No Unix socket: clients use TCP, and a long project path would not fit a socket name.
        as_pg tee -a "$data/postgresql.conf" >/dev/null <<'EOF'

# tessera throwaway cluster
fsync = off
synchronous_commit = off
full_page_writes = off
unix_socket_directories = ''
EOF
    fi
    major=$(cat "$data/PG_VERSION")
    [[ -x /usr/lib/postgresql/$major/bin/postgres || -n ${PGBIN:-} ]] ||
        die "$data was made by PostgreSQL $major, which is not installed any more: run make clean."
    if ! as_pg "$(pg_bin pg_ctl "$major")" -D "$data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses='$listen'" start >/dev/null 2>&1; then
        die "pg_ctl start failed (is port $port taken?): $(tail -5 "$dir/server.log" 2>/dev/null)"
    fi
    STARTED_PG=$data
    PG_STATE="throwaway, started in ${dir/#$ROOT\//}"
}

stop_pg() { # stop_pg DATADIR
    local data=$1 major
    [[ -f $data/postmaster.pid ]] || return 0
    major=$(cat "$data/PG_VERSION")
    say "stopping the throwaway PostgreSQL"
    as_pg "$(pg_bin pg_ctl "$major")" -D "$data" -m fast -w stop >/dev/null 2>&1 ||
        warn "could not stop the PostgreSQL in $data"
}

ensure_postgres() {
    local err port
    step "connecting to PostgreSQL at $DB_HOST:$DB_PORT"
    PG_STATE="already running"
    if pg_port_answers "$DB_PORT"; then
        if err=$(pgq postgres -c 'select 1' 2>&1 >/dev/null); then
            return 0
        fi
        if [[ -n $DB_URL_DEFAULTED ]] && is_local_host "$DB_HOST"; then
            port=$FALLBACK_PG_PORT
            say "the PostgreSQL at $DB_HOST:$DB_PORT would not let us in (${err//$'\n'/ });" \
                "using a throwaway one on port $port"
            DB_PORT=$port
            DATABASE_URL=$(url_with_port "$DATABASE_URL" "$port")
            export DATABASE_URL
            pg_port_answers "$port" || start_pg "$port"
        else
            die "PostgreSQL at $DB_HOST:$DB_PORT answers but refused the connection: ${err//$'\n'/ }." \
                "Check the user and password in DATABASE_URL."
        fi
    else
        start_pg "$DB_PORT"
    fi
    step "connecting to PostgreSQL at $DB_HOST:$DB_PORT"
    err=$(pgq postgres -c 'select 1' 2>&1 >/dev/null) || die "cannot connect: $err"
}

# The database exists and has PostGIS; for tests, the test database will be able to get it too.
ensure_database() {
    local mode=$1 super exists have avail major
    step "preparing database $DB_NAME"
    super=$(pgq postgres -c 'select rolsuper from pg_roles where rolname = current_user')
    exists=$(pgq postgres -v db="$DB_NAME" <<<"select 1 from pg_database where datname = :'db'")
    if [[ -z $exists ]]; then
        say "creating database $DB_NAME"
        pgq postgres -v db="$DB_NAME" <<<'create database :"db"' ||
            die "could not create database $DB_NAME (the user in DATABASE_URL needs CREATEDB)."
    fi
    have=$(pgq "$DB_NAME" -c "select 1 from pg_extension where extname = 'postgis'")
    [[ -n $have ]] && [[ $mode != test || $super == t ]] && return 0

    avail=$(pgq "$DB_NAME" -c "select 1 from pg_available_extensions where name = 'postgis'")
    if [[ -z $avail ]]; then
        major=$(pgq "$DB_NAME" -c 'show server_version_num')
        major=$((major / 10000))
        if is_local_host "$DB_HOST" && command -v apt-get >/dev/null; then
            step "installing PostGIS for PostgreSQL $major"
            need_apt "postgresql-$major-postgis-3"
            apt_update_once
            apt_install "postgresql-$major-postgis-3"
            step "preparing database $DB_NAME"
        else
            die "the PostgreSQL server at $DB_HOST:$DB_PORT has no PostGIS: install postgresql-$major-postgis-3 there."
        fi
    fi
    if [[ $super == t ]]; then
        [[ -n $have ]] || pgq "$DB_NAME" -c 'create extension if not exists postgis'
        return 0
    fi
    [[ -n $have ]] || die "database $DB_NAME lacks PostGIS and user '${DB_USER:-$USER}' is no superuser:" \
        "run CREATE EXTENSION postgis in it as a superuser, or put user postgres in DATABASE_URL."
    # pytest creates test_$DB_NAME and needs CREATE EXTENSION postgis in it.
    have=$(pgq template1 -c "select 1 from pg_extension where extname = 'postgis'")
    [[ -n $have ]] || die "the tests create their own database with PostGIS, which needs a superuser:" \
        "put user postgres in DATABASE_URL, or run CREATE EXTENSION postgis in template1 as a superuser."
}

# --------------------------------------------------------------------------------------------
# Redis

redis_ping() { # redis_ping PORT: prints the reply (PONG, or why not)
    local host=${REDIS_HOST#[} auth=()
    # REDISCLI_AUTH, not -a: keeps the password off the process list. Empty would send AUTH "".
    [[ -z $REDIS_PASSWORD ]] || auth=(REDISCLI_AUTH="$REDIS_PASSWORD")
    { env "${auth[@]}" redis-cli -h "${host%]}" -p "$1" ping 2>&1 || true; } | head -1
}

start_redis() { # start_redis PORT
    local port=$1 dir="$LOCAL/redis" host=${REDIS_HOST#[}
    host=${host%]}
    step "starting a throwaway Redis on $REDIS_HOST:$port"
    is_local_host "$REDIS_HOST" || die "Redis at $REDIS_HOST:$port does not answer, and it is not on this machine."
    mkdir -p "$dir"
    redis-server --daemonize yes --dir "$dir" --port "$port" --bind "$host" \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no \
        ${REDIS_PASSWORD:+--requirepass "$REDIS_PASSWORD"} >/dev/null ||
        die "redis-server did not start: $(tail -5 "$dir/redis.log" 2>/dev/null)"
    STARTED_REDIS="$dir/redis.pid"
    for _ in $(seq 50); do
        [[ $(redis_ping "$port") == PONG ]] && break
        sleep 0.1
    done
    [[ $(redis_ping "$port") == PONG ]] || die "Redis did not answer on port $port: $(tail -5 "$dir/redis.log")"
    REDIS_STATE="throwaway, started in .local/redis"
}

stop_redis() { # stop_redis PIDFILE: only the throwaway redis-server named by our own pid file
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]]; then
        say "stopping the throwaway Redis"
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
}

ensure_redis() {
    local reply port
    step "connecting to Redis at $REDIS_HOST:$REDIS_PORT"
    REDIS_STATE="already running"
    reply=$(redis_ping "$REDIS_PORT")
    [[ $reply == PONG ]] && return 0
    if [[ $reply == *"Could not connect"* || $reply == *"Connection refused"* ]]; then
        start_redis "$REDIS_PORT"
    elif [[ -n $REDIS_URL_DEFAULTED ]] && is_local_host "$REDIS_HOST"; then
        port=$FALLBACK_REDIS_PORT
        say "the Redis at $REDIS_HOST:$REDIS_PORT answered '$reply'; using a throwaway one on port $port"
        REDIS_PORT=$port
        REDIS_URL=$(url_with_port "$REDIS_URL" "$port")
        export REDIS_URL
        [[ $(redis_ping "$port") == PONG ]] || start_redis "$port"
    else
        die "Redis at $REDIS_HOST:$REDIS_PORT answered '$reply'. Check REDIS_URL."
    fi
}

# --------------------------------------------------------------------------------------------
# Steps shared by the subcommands

bootstrap() { # bootstrap MODE (services|test)
    ensure_system "$1"
    ensure_venv
    read_urls
    ensure_postgres
    ensure_redis
    ensure_database "$1"
    step "ready"
    say "PostgreSQL $DB_HOST:$DB_PORT ($PG_STATE), Redis $REDIS_HOST:$REDIS_PORT ($REDIS_STATE);" \
        "bootstrap took $(elapsed "$T0")"
}

manage() { "$PY" manage.py "$@"; }

# checked LABEL COMMAND...: run a step; on failure, say which one in plain words.
checked() {
    local label=$1 rc=0
    shift
    step "$label"
    "$@" || rc=$?
    ((rc == 0)) || die "$label failed (exit $rc); see its output above."
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stages for `test`, `lint` and `bench`: each runs even when an earlier one failed; a summary follows.
STAGES=()
FAILED=()
stage() { # stage NAME COMMAND...
    local name=$1 t rc=0
    shift
    step "$name"
    say "── $name"
    t=$(date +%s%N)
    "$@" || rc=$?
    STAGES+=("$(printf '%-34s %-6s %s' "$name" "$( ((rc == 0)) && echo ok || echo "FAIL($rc)")" "$(elapsed "$t")")")
    ((rc == 0)) || FAILED+=("$name")
    return 0
}

finish_stages() {
    local line
    step "summary"
    say "── summary"
    for line in "${STAGES[@]}"; do say "   $line"; done
    if ((${#FAILED[@]})); then
        say "FAILED: ${FAILED[*]} (total $(elapsed "$T0"))"
        exit 1
    fi
    say "all passed (total $(elapsed "$T0"))"
}

lint_stages() {
    local paths=() p
    stage "ruff check" "$VENV/bin/ruff" check .
    stage "ruff format --check" "$VENV/bin/ruff" format --check .
    for p in "${MYPY_PATHS[@]}"; do
        # A path counts once it holds Python code (a new package may still be an empty folder).
        [[ -n $(find "$p" -name '*.py' -print -quit 2>/dev/null) ]] && paths+=("$p")
    done
    if ((${#paths[@]})); then
        say "mypy checks: ${paths[*]}"
        stage "mypy (pure cores)" "$VENV/bin/mypy" "${paths[@]}"
    else
        say "── mypy: none of ${MYPY_PATHS[*]} exists yet; skipped"
    fi
}

run_pytest() {
    local args=() rc=0
    read -ra args <<<"${PYTEST_ARGS:-}"
    "$VENV/bin/pytest" "${args[@]}" || rc=$?
    ((rc != 5)) || say "pytest collected no tests: that counts as a failure"
    return "$rc"
}

wait_for_port() { # wait_for_port PORT PID: 0 once something listens, 1 if PID died first
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Start a long-running program in its own process group, so that stopping it also stops its
# children (runserver's autoreloader runs the server in a child process).
spawn() { # spawn NAME COMMAND...
    local name=$1
    shift
    setsid "$@" </dev/null &
    CHILD_PGIDS+=("$!")
    NAMES[$!]=$name
}

# --------------------------------------------------------------------------------------------
# Subcommands

cmd_run() {
    local port=${PORT:-8000} demo="" done_pid
    [[ $port =~ ^[0-9]+$ ]] || die "PORT=$port is not a port number."
    export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
    port_free "$port" || die "port $port is already in use: stop what listens there, or set PORT."
    bootstrap services
    checked "migrate" manage migrate --no-input -v 0
    # Both commands are idempotent: a second `make run` finds the data loaded and moves on.
    checked "manage.py load_geography" manage load_geography
    if [[ ${TESSERA_LOAD_DEMO:-1} == 0 ]]; then
        say "TESSERA_LOAD_DEMO=0: no demo data"
    else
        step "manage.py load_demo"
        # It prints the demo logins; keep a copy to show again once the server is up.
        mkdir -p "$LOCAL"
        local rc=0
        manage load_demo | tee "$LOCAL/demo-logins.txt" || rc=$?
        ((rc == 0)) || die "manage.py load_demo failed (exit $rc); see its output above."
        demo=1
    fi

    step "starting web server, worker and beat"
    spawn "web server" "$PY" manage.py runserver "0.0.0.0:$port"
    spawn "celery worker" "$VENV/bin/celery" -A config worker -l info --concurrency 2
    spawn "celery beat" "$VENV/bin/celery" -A config beat -l info --schedule "$LOCAL/celerybeat-schedule"
    wait_for_port "$port" "${CHILD_PGIDS[0]}" || die "the web server did not start (see its output above)."
    step "serving"
    echo
    say "Tessera is running at http://127.0.0.1:$port/  (Ctrl-C stops everything)"
    if [[ -n $demo ]]; then say "demo logins: see above, or .local/demo-logins.txt"; fi
    echo
    done_pid=""
    wait -n -p done_pid "${CHILD_PGIDS[@]}" || true
    die "the ${NAMES[$done_pid]:-process $done_pid} stopped; stopping the rest."
}

cmd_test() {
    export DJANGO_SETTINGS_MODULE=config.settings.test
    bootstrap test
    lint_stages
    stage "makemigrations --check" "$PY" manage.py makemigrations --check --dry-run
    stage "pytest" run_pytest
    finish_stages
}

cmd_lint() {
    ensure_system python
    ensure_venv
    lint_stages
    finish_stages
}

cmd_migrate() {
    export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
    bootstrap services
    checked "migrate" manage migrate --no-input
}

# The optimizer benchmark's peers (scikit-learn, k-means-constrained, highspy) live in the `bench`
# extra: heavy and never needed to run or test Tessera, so only `make bench` installs them. Its own
# stamp, so that the `dev` install's stamp (checked by every other command) is left alone.
ensure_bench_extra() {
    local stamp="$VENV/.tessera-bench-installed" want
    step "installing the bench extra"
    want="$(sha256sum pyproject.toml | cut -c1-64) bench"
    [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && return 0
    say "pip install -e '.[dev,bench]' (log in .venv/pip-install.log)"
    "$PY" -m pip install --disable-pip-version-check -e '.[dev,bench]' >"$VENV/pip-install.log" 2>&1 ||
        die "pip install -e '.[dev,bench]' failed: $(tail -25 "$VENV/pip-install.log")"
    printf '%s\n' "$want" >"$stamp"
}

cmd_bench() {
    local f files=()
    export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.local}
    bootstrap services
    ensure_bench_extra
    checked "migrate" manage migrate --no-input -v 0
    # *_instances.py and *_peers.py are a benchmark's helpers, run by the benchmark itself.
    for f in bench/*.py; do
        case $f in *_instances.py | *_peers.py) continue ;; esac
        [[ -f $f ]] && files+=("$f")
    done
    ((${#files[@]})) || {
        say "no benchmarks in bench/"
        return 0
    }
    for f in "${files[@]}"; do stage "$f" "$PY" "$f"; done
    finish_stages
}

cmd_clean() {
    local data
    step "clean"
    if [[ -e $LOCAL/postgres ]]; then
        data="$(readlink -f "$LOCAL/postgres")/data"
        stop_pg "$data"
        if [[ -L $LOCAL/postgres ]]; then rm -rf "$(readlink -f "$LOCAL/postgres")"; fi
    fi
    stop_redis "$LOCAL/redis/redis.pid"
    rm -rf "$LOCAL"
    say "removed .local/"
}

usage() {
    cat <<'EOF'
usage: scripts/bootstrap.sh COMMAND

  run       install what is missing, prepare the database with demo data, serve on $PORT (8000)
  test      install what is missing, then ruff, mypy, makemigrations --check and pytest
  lint      ruff check, ruff format --check and mypy on the pure cores
  migrate   install what is missing and apply migrations
  bench     install what is missing, then run every bench/*.py
  clean     stop the throwaway PostgreSQL/Redis in .local/ and remove .local/
EOF
}

main() {
    local cmd=${1:-}
    case $cmd in
    run | test | lint | migrate | bench | clean)
        shift
        "cmd_$cmd" "$@"
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
