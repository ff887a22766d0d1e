# fake-lib.sh: what the lab's fake tools share (sourced by fake-civi and fake-drush12).
#
# State lives per *database* under $FAKE_CIVI_HOME (default $FLEET_ROOT/fake-civi): a directory
# db/<name>/ of one file per fact. Every call is logged as a JSON line in calls.log. Failures
# are injected with files $FAKE_CIVI_HOME/fail/<point> (content N = fail the next N times;
# empty = always) or FAKE_CIVI_FAIL=<point>[,<point>...].

set -u

TOOL=${TOOL:-$(basename "$0")}
STATE=${FAKE_CIVI_HOME:-${FLEET_ROOT:-/var/lib}/fake-civi}
mkdir -p "$STATE/db" 2>/dev/null
ARGS=("$@")
INJECTED=""
SITE_DIR=""
CALL_EXIT=0
# The CiviCRM database version when the call began (for the calls that read it): a database
# upgrade begun on a database already past FROM shows in the log as a step run twice.
DB_BEFORE=""

json_str() {
    local s=$1
    s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}; s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
}

log_call() {
    local argv="" a
    for a in "${ARGS[@]}"; do argv+="${argv:+,}$(json_str "$a")"; done
    {
        flock 9
        printf '{"ts":"%s","tool":%s,"argv":[%s],"cwd":%s,"uid":%s,"user":%s,"site":%s,"exit":%s,"injected":%s,"db_before":%s}\n' \
            "$(date +%s.%N)" "$(json_str "$TOOL")" "$argv" "$(json_str "$PWD")" "$(id -u)" \
            "$(json_str "$(id -un)")" "$(json_str "$SITE_DIR")" "$CALL_EXIT" "$(json_str "$INJECTED")" "$(json_str "$DB_BEFORE")" >>"$STATE/calls.log"
    } 9>>"$STATE/calls.lock"
}

finish() { CALL_EXIT=$1; log_call; exit "$1"; }

# inject POINT: succeeds (returns 0) when a failure is to be injected at POINT now.
inject() {
    local point=$1 f=$STATE/fail/$1 n
    case ",${FAKE_CIVI_FAIL:-}," in *",$point,"*) INJECTED=$point; return 0 ;; esac
    [[ -e $f ]] || return 1
    {
        flock 8
        n=$(cat "$f" 2>/dev/null)
        if [[ -z $n ]]; then INJECTED=$point; return 0; fi
        if [[ $n =~ ^[0-9]+$ && $n -gt 0 ]]; then
            echo $((n - 1)) >"$f"
            INJECTED=$point; return 0
        fi
        return 1
    } 8>>"$STATE/fail.lock"
}

# inject_value POINT: the text after '=' in the fail file (e.g. a task title), if any.
inject_value() { cat "$STATE/fail/$1.value" 2>/dev/null || true; }

hangs() {
    if inject hang; then sleep "$(inject_value hang | grep -E '^[0-9]+([.][0-9]+)?$' || echo 3600)"; fi
    if inject slow; then sleep "$(inject_value slow | grep -E '^[0-9]+([.][0-9]+)?$' || echo 2)"; fi
    if inject php.oom; then
        echo "PHP Fatal error:  Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes) in /fake/php on line 1" >&2
        finish 255
    fi
}

# ---- site and database resolution ------------------------------------------------------------
ROOT="" URI=""
find_root() {
    local d=${1:-$PWD}
    while [[ $d != / && -n $d ]]; do
        [[ -f $d/index.php && -d $d/sites ]] && { echo "$d"; return 0; }
        d=$(dirname "$d")
    done
    return 1
}

resolve_site() {
    [[ -n $ROOT ]] || ROOT=$(find_root) || return 1
    local host=${URI#*://}; host=${host%%/*}; host=${host%%:*}
    if [[ -n $host && -d $ROOT/sites/$host ]]; then SITE_DIR=$ROOT/sites/$host
    else SITE_DIR=$ROOT/sites/default; fi
}

setting() { # setting NAME FILE -> the quoted value of define('NAME', '...') or $NAME = '...'
    sed -n -E "s/^[[:space:]]*(define\('$1',[[:space:]]*|\\\$$1[[:space:]]*=[[:space:]]*)'([^']*)'.*/\2/p" "$2" | head -n1
}

dsn_db() { local d=${1##*/}; echo "${d%%\?*}"; }

# ---- dumps and restores ----------------------------------------------------------------------
write_dump() { # write_dump DBDIR DBNAME FILE ROUTINES(present|missing) FAILPOINT
    local dir=$1 name=$2 out=$3 routines=$4 k
    [[ -n $out ]] || out=/dev/stdout
    {
        echo "-- MySQL dump (fake-civi) db=$name"
        for k in civicrm_domain.version triggers variable.maintenance_mode; do
            [[ -f $dir/$k ]] && echo "-- fake-civi-kv $k=$(cat "$dir/$k")"
        done
        # data.<table> and count.<table>: the sites' own data (one line each), what a restore
        # must never lose.
        for k in "$dir"/data.* "$dir"/count.*; do
            [[ -f $k ]] && echo "-- fake-civi-kv ${k##*/}=$(head -n1 "$k")"
        done
        [[ -f $dir/tables_added ]] && while read -r t; do echo "-- fake-civi-kv tables_added+=$t"; done <"$dir/tables_added"
        [[ -f $dir/modules_enabled ]] && while read -r m; do echo "-- fake-civi-kv modules_enabled+=$m"; done <"$dir/modules_enabled"
        echo "-- fake-civi-kv routines=$routines"
    } >"$out" || return 1
    if inject "$5"; then
        echo "mysqldump: Got error: 1045: Access denied for user 'civi'@'localhost' (using password: YES) when using LOCK TABLES" >&2
        return 1
    fi
    inject dump.truncate && return 0
    # dump.disk: the disk fills while the dump is written (what mysqldump says on ENOSPC).
    if inject dump.disk; then echo "mysqldump: Got errno 28 on write" >&2; return 2; fi
    echo "-- Dump completed on $(date '+%Y-%m-%d %H:%M:%S')" >>"$out"
}

# sql_probe INPUT: the statements fleet asks a mysql client alone (each on its own line):
# SHOW DATABASES LIKE 'x'; (batch mode: a header and the row when it exists, nothing when not),
# SELECT 'literal'; and DROP DATABASE `x`;. Returns 1 (nothing done) for anything else.
sql_probe() {
    local input=$1 line
    [[ -n $input ]] || return 1
    while IFS= read -r line; do
        [[ $line =~ ^SHOW\ DATABASES\ LIKE\ \'[A-Za-z0-9_]+\'\;?$ || $line =~ ^SELECT\ \'[A-Za-z0-9_-]+\'\;?$ || $line =~ ^DROP\ DATABASE\ \`[A-Za-z0-9_]+\`\;?$ ]] || return 1
    done <<<"$input"
    while IFS= read -r line; do
        if [[ $line =~ ^SHOW\ DATABASES\ LIKE\ \'([A-Za-z0-9_]+)\' ]]; then
            [[ -d $STATE/db/${BASH_REMATCH[1]} ]] && printf 'Database (%s)\n%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[1]}"
        elif [[ $line =~ ^SELECT\ \'([A-Za-z0-9_-]+)\' ]]; then
            printf '%s\n%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[1]}"
        elif [[ $line =~ ^DROP\ DATABASE\ \`([A-Za-z0-9_]+)\` ]]; then
            [[ -d $STATE/db/${BASH_REMATCH[1]} ]] || { echo "ERROR 1008 (HY000) at line 1: Can't drop database '${BASH_REMATCH[1]}'; database doesn't exist" >&2; return 2; }
            rm -rf "${STATE:?}/db/${BASH_REMATCH[1]}"
        fi
    done <<<"$input"
    return 0
}

restore_from_stdin() { # restore_from_stdin DEFAULT_DBNAME
    local input db=$1 line k v dir
    input=$(cat)
    # As mysql: a `USE` before the dump's statements picks the database they go to (the
    # dump's header comment names the one it was taken from, which is the default).
    if [[ $input =~ (^|$'\n')USE\ \`([A-Za-z0-9_]+)\`\; ]]; then db=${BASH_REMATCH[2]}
    elif [[ $input =~ db=([A-Za-z0-9_]+) ]]; then db=${BASH_REMATCH[1]}; fi
    dir=$STATE/db/$db
    if grep -qE 'DROP DATABASE|-- fake-civi DROP-ALL' <<<"$input" || [[ ${FAKE_CIVI_STRICT_RESTORE:-0} != 1 ]]; then
        rm -rf "$dir"
    fi
    # A load that dies after the drop (the connection lost, the disk full): an empty database.
    if inject restore.fail; then
        mkdir -p "$dir"
        echo "ERROR 2013 (HY000) at line 40: Lost connection to MySQL server during query" >&2
        return 1
    fi
    mkdir -p "$dir"
    rm -f "$dir/modules_enabled.new"
    while IFS= read -r line; do
        [[ $line == "-- fake-civi-kv "* ]] || continue
        line=${line#-- fake-civi-kv }
        case $line in
            tables_added+=*) echo "${line#tables_added+=}" >>"$dir/tables_added.new" ;;
            modules_enabled+=*) echo "${line#modules_enabled+=}" >>"$dir/modules_enabled.new" ;;
            *=*) k=${line%%=*}; v=${line#*=}; echo "$v" >"$dir/$k" ;;
        esac
    done <<<"$input"
    if [[ -f $dir/tables_added.new ]]; then sort -u "$dir/tables_added.new" -o "$dir/tables_added"; rm -f "$dir/tables_added.new"; fi
    [[ -f $dir/modules_enabled.new ]] && mv "$dir/modules_enabled.new" "$dir/modules_enabled"
    # A last `SELECT CONCAT('fleet-loaded:', DATABASE());`: mysql runs it only when every
    # statement before it did, in the database they went to.
    if grep -qF "SELECT CONCAT('fleet-loaded:', DATABASE());" <<<"$input"; then
        printf "%s\nfleet-loaded:%s\n" "CONCAT('fleet-loaded:', DATABASE())" "$db"
    fi
    return 0
}
