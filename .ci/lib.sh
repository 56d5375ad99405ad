# Shell helpers sourced by .ci/run and .ci/smoke (not run on its own).

free_disk_mb() {  # free_disk_mb DIR: MB free on the disk holding DIR
    df -Pm "$1" | awk 'NR==2 {print $4}'
}

pip_install_into() {  # pip_install_into VENV LOG ARGS...: pip install -q into VENV, its output shown; exits when pip fails
    local venv=$1 log=$2 status=0
    shift 2
    "$venv/bin/python" -m pip install -q "$@" > "$log" 2>&1 || status=$?
    grep -v "^WARNING: Location" "$log" || true  # pip's notes on index locations that do not exist here
    if [ "$status" != 0 ]; then
        echo "${PIP_CONTEXT:-}pip install $* failed (exit $status; $(free_disk_mb "$(dirname "$log")") MB free on the disk)"
        exit 1
    fi
}
