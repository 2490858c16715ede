#!/usr/bin/env bash
# Regenerates crates/keel-etcd/src/pb/*.rs from crates/keel-etcd/proto/*.proto.
# The generated code is committed so that building Keel needs no protoc; run
# this (it needs protoc: apt-get install protobuf-compiler) after changing a .proto.
# Besides prost's types and tonic's services it writes `*.serde.rs`: pbjson's
# serde impls of the proto3 JSON mapping as etcd's gateway speaks it (the
# proto's own field names on output, both spellings and unknown fields
# accepted on input), for the HTTP/JSON gateway.
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
pbjson-build = "=0.7.0"
TOML
cat > "$gen/src/main.rs" <<RS
fn main() {
    let proto = "$root/crates/keel-etcd/proto";
    let descriptors = "$gen/descriptors.bin";
    tonic_build::configure()
        .file_descriptor_set_path(descriptors)
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
    let set = std::fs::read(descriptors).expect("read descriptors");
    pbjson_build::Builder::new()
        .register_descriptors(&set)
        .expect("register descriptors")
        .out_dir("$root/crates/keel-etcd/src/pb")
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb"])
        .expect("generate serde impls");
}
RS
(cd "$gen" && CARGO_TARGET_DIR="$root/target/protogen" cargo run -q)
echo "generated: $(ls crates/keel-etcd/src/pb)"
