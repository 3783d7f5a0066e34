# Sourced by the other scripts: installs missing Debian packages (as root, or via sudo).
need_pkgs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

need_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
}

# Node.js and npm for the web front end's build and browser tests (Debian's packages unless
# a node is already on PATH).
need_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        return 0
    fi
    need_pkgs nodejs npm
}

# The SIPVicious scanners (PyPI `sipvicious`: svmap, svwar, svcrack), which the attack tests
# run against the engine; pinned so that a new release cannot change what the tests see.
need_sipvicious() {
    command -v sipvicious_svmap >/dev/null 2>&1 && return 0
    command -v python3 >/dev/null 2>&1 || need_pkgs python3 python3-pip
    python3 -m pip install -q sipvicious==0.3.8 >&2 ||
        python3 -m pip install -q --break-system-packages sipvicious==0.3.8 >&2
    hash -r
}

# Keeps the fixed ports NAME LO-HI that a load script binds out of the kernel's ephemeral
# range (net.ipv4.ip_local_port_range), where the simulated phones' and browsers' sockets
# land: an overlap is reserved (net.ipv4.ip_local_reserved_ports, as root; it lasts until
# reboot) and said so, or the script stops with both ranges named.
clear_of_ephemeral() {
    local name=$1 lo=$2 hi=$3 elo ehi cur
    read -r elo ehi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
    (( hi < elo || lo > ehi )) && return 0
    cur=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true)
    if echo "${cur:+$cur,}$lo-$hi" > /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null; then
        echo "ports: $name $lo-$hi is inside the kernel's ephemeral range $elo-$ehi: reserved it (net.ipv4.ip_local_reserved_ports, until reboot)" >&2
    else
        echo "ports: $name $lo-$hi is inside the kernel's ephemeral range $elo-$ehi and cannot be reserved here (not root?): choose another base port (-p) or narrow net.ipv4.ip_local_port_range" >&2
        exit 2
    fi
}
