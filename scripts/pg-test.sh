# Sourced by scripts/test.sh: installs and starts a local PostgreSQL for the store tests
# and exports DASAN_TEST_PG (a connection URL for a scratch database on loopback).
need_pkgs postgresql
if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
    cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
    if [ -z "$cluster" ]; then
        pg_createcluster "$(ls /usr/lib/postgresql | sort -n | tail -1)" main >/dev/null
        cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
    fi
    # shellcheck disable=SC2086
    pg_ctlcluster $cluster start
fi
port=$(pg_lsclusters -h | awk '$4 == "online" {print $3; exit}')
su postgres -c "psql -q -p $port -c \"ALTER USER postgres PASSWORD 'dasan-test'\"" >/dev/null
su postgres -c "psql -q -p $port -tc \"SELECT 1 FROM pg_database WHERE datname = 'dasan_test'\"" | grep -q 1 \
    || su postgres -c "psql -q -p $port -c 'CREATE DATABASE dasan_test'" >/dev/null
export DASAN_TEST_PG="postgresql://postgres:dasan-test@127.0.0.1:$port/dasan_test"
