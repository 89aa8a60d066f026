#!/usr/bin/env bash
# tagwarden installer: the admin's one entry point.
#
#   ./install.sh                                   venv + package, then a demo repository
#   ./install.sh [--mode pre-receive|update] [--policy FILE] REPO.git...
#                                                  install the hooks into bare repositories
#   ./install.sh --uninstall REPO.git...           remove them, restoring any kept hooks
#   ./install.sh --test                            install test dependencies, run every test
#
# Environment: PYTHON (default python3), TAGWARDEN_VENV (default ./.venv).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
venv=${TAGWARDEN_VENV:-$here/.venv}
python=${PYTHON:-python3}

say() { printf 'install.sh: %s\n' "$*" >&2; }

need_system_packages() {
    # git is the only system package tagwarden needs; install it when missing and allowed.
    local missing=()
    command -v git >/dev/null 2>&1 || missing+=(git)
    "$python" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing system packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        say "missing system packages: ${missing[*]} (install them, then re-run)"; exit 1
    fi
}

need_test_packages() {
    # what the tests start for real: a headless browser for the HTML report, and the
    # servers pushes go through (sshd, nginx + fcgiwrap + git http-backend, gitolite)
    local missing=() pkg
    command -v dpkg >/dev/null 2>&1 || return 0
    for pkg in chromium fonts-liberation fonts-dejavu-core openssh-server openssh-client \
               nginx fcgiwrap gitolite3 python3 python3-venv; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing test system packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        say "missing test system packages: ${missing[*]}; the tests that need them are skipped"
    fi
}

make_venv() {
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || { say "tagwarden needs Python 3.9 or newer ($python is older)"; exit 1; }
    [ -x "$venv/bin/python" ] || { say "creating $venv"; "$python" -m venv "$venv"; }
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
}

case "${1:-}" in
    --test)
        shift
        need_system_packages
        need_test_packages
        make_venv
        say "installing tagwarden (editable, so the tests judge this checkout) and test tools"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$here[test]"
        cd "$here"
        exec "$venv/bin/python" -m pytest -n auto "$@"   # one worker per CPU
        ;;
    -h|--help)
        sed -n '2,11p' "$0"; exit 0
        ;;
esac

need_system_packages
make_venv
say "installing tagwarden into $venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$here"

if [ $# -eq 0 ]; then
    exec "$venv/bin/tagwarden" demo "$here/demo"
elif [ "$1" = "--uninstall" ]; then
    shift
    exec "$venv/bin/tagwarden" uninstall "$@"
else
    exec "$venv/bin/tagwarden" install "$@"
fi
