#!/usr/bin/env bash
# Regenerates crates/keel-etcd/src/pb/*.rs from crates/keel-etcd/proto/*.proto.
# The generated code is committed so that building Keel needs no protoc; run
# this (it needs protoc: apt-get install protobuf-compiler) after changing a .proto.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
mkdir -p "$gen/src"
cat > "$gen/Cargo.toml" <<TOML
[package]
name = "keel-etcd-protogen"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
tonic-build = "=0.12.3"
TOML
cat > "$gen/src/main.rs" <<RS
fn main() {
    let proto = "$root/crates/keel-etcd/proto";
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir("$root/crates/keel-etcd/src/pb")
        .compile_protos(
            &[
                format!("{proto}/rpc.proto"),
                format!("{proto}/v3lock.proto"),
                format!("{proto}/v3election.proto"),
                format!("{proto}/internal.proto"),
            ],
            &[proto.to_string()],
        )
        .expect("compile protos");
}
RS
(cd "$gen" && CARGO_TARGET_DIR="$root/target/protogen" cargo run -q)
echo "generated: $(ls crates/keel-etcd/src/pb)"
