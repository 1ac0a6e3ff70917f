# Sourced by scripts/demo and scripts/test: installs a Debian package when a
# command it provides is missing (as root with apt-get), or says what to run.
#   need COMMAND|/PATH PACKAGE WHY
need() {
    local cmd=$1 pkg=$2 why=$3
    case $cmd in
        /*) [ -e "$cmd" ] && return 0 ;;
        *) command -v "$cmd" >/dev/null && return 0 ;;
    esac
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing $pkg ($why)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"; }
    else
        echo "$pkg is needed ($why): sudo apt-get install $pkg" >&2
        exit 1
    fi
}
