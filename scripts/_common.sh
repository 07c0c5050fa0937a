# shellcheck shell=bash
# Helpers shared by the scripts in this folder (sourced, not run).

# need_value OPTION [VALUE ...]: exits with a usage error when OPTION has no value after it.
need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then
        echo "error: $1 needs a value (see --help)" >&2
        exit 2
    fi
}
