#!/usr/bin/env bash
# tagwarden installer: the admin's one entry point.
#
#   ./install.sh                                   venv + package, then a demo repository
#   ./install.sh [--prefix DIR] [--mode pre-receive|update] [--layout auto|plain|gitea|gitlab|gitolite]
#                [--policy FILE] [--policy-override FILE] [--gitolite-local-code DIR]
#                [--server-side] [--dry-run] (REPO.git... | --all ROOT)
#                                                  install the hooks into bare repositories
#   ./install.sh [--prefix DIR] --uninstall [--dry-run] [--gitolite-local-code DIR] (REPO.git... | --all ROOT)
#                                                  remove them, restoring any kept hooks
#   ./install.sh --prefix DIR                      only make (or update) the venv DIR
#   ./install.sh --test                            install test dependencies, run every test
#
# --prefix DIR: a system-wide venv in DIR that service accounts (git, gitolite3, www-data)
# can run: made from a system Python (/usr/bin/python3 unless PYTHON says otherwise),
# tagwarden installed into it from a copy of this checkout (not editable), every file
# world-readable; the hooks then exec DIR/bin/python. Without it: ./.venv (TAGWARDEN_VENV).
# Environment: PYTHON (default python3; with --prefix /usr/bin/python3), TAGWARDEN_VENV.
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
               nginx fcgiwrap gitolite3 rsyslog python3 python3-venv; do
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

make_prefix() {
    # a venv other users can run: from a system Python, files world-readable, and
    # tagwarden built from a copy (building in the checkout would leave build/ there)
    local copy name
    umask 022
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
        say "$venv exists and is not a venv; choose an empty or new directory"; exit 1
    fi
    make_venv
    copy=$(mktemp -d)
    for name in tagwarden policy hooks pyproject.toml setup.cfg README.md; do
        cp -R "$here/$name" "$copy/"
    done
    find "$copy" -name __pycache__ -prune -exec rm -rf {} +
    say "installing tagwarden into $venv (not editable)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input "$copy"
    rm -rf "$copy"
    chmod -R go+rX,go-w "$venv"
    # the venv's python runs the base interpreter and its standard library: other users
    # must reach those too (a pyenv under a 0700 home does not qualify)
    "$venv/bin/python" -I -c '
import os, sys, tagwarden
from tagwarden.owner import world_problems
problems = world_problems([sys.executable, os.path.realpath(sys.executable),
                           os.path.dirname(os.__file__), os.path.dirname(tagwarden.__file__)])
for p in problems:
    print(f"install.sh: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)' || {
        say "$venv/bin/python cannot be run by other users: make it from a system Python (PYTHON=/usr/bin/python3 $0 --prefix $venv)"
        exit 1
    }
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
        sed -n '2,18p' "$0"; exit 0
        ;;
esac

# --prefix DIR and --uninstall may stand anywhere; everything else goes to tagwarden
prefix= uninstall= args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { say "--prefix needs a directory"; exit 2; }
                  prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --uninstall) uninstall=1; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

if [ -n "$prefix" ]; then
    case "$prefix" in /*) ;; *) prefix=$PWD/$prefix ;; esac
    venv=$prefix
    python=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}
    need_system_packages
    make_prefix
    if [ ${#args[@]} -eq 0 ] && [ -z "$uninstall" ]; then
        say "tagwarden is in $venv: $venv/bin/tagwarden install REPO... (or $0 --prefix $venv REPO...)"
        exit 0
    fi
else
    need_system_packages
    make_venv
    say "installing tagwarden into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$here"
fi

if [ -n "$uninstall" ]; then
    exec "$venv/bin/tagwarden" uninstall ${args[@]+"${args[@]}"}
elif [ ${#args[@]} -eq 0 ]; then
    exec "$venv/bin/tagwarden" demo "$here/demo"
else
    exec "$venv/bin/tagwarden" install "${args[@]}"
fi
