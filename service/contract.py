"""The contract as reflection serves it: the descriptor set `make protos` builds from protos/ (with
the comments: source info), loaded at server start.

Two things the default descriptor pool of the upb protobuf runtime does not do, and reflection
needs: `FindFileContainingSymbol` finds messages, fields, enums and services but not methods (so
`grpcurl describe seats.v1.SeatService.AssignSeat` answered "Symbol not found"), and a file
descriptor's `CopyToProto` leaves out the source info (so `describe` showed no comment). Here the
symbols are indexed from the FileDescriptorProtos themselves, and the file protos reflection sends
are those of the descriptor set, comments included."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

DESCRIPTOR_SET = Path(__file__).resolve().parent / "contract.binpb"
"""protos/seats/v1/*.proto and their imports with source info, then the health and reflection
services and the error details; written by `make protos` (build() below), committed."""


def load_descriptor_set(path: Path = DESCRIPTOR_SET) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def _symbols(file: descriptor_pb2.FileDescriptorProto) -> Iterator[str]:
    """Every full name the file declares, as a reflection client may ask for it."""
    package = f"{file.package}." if file.package else ""

    def enum(scope: str, value: descriptor_pb2.EnumDescriptorProto) -> Iterator[str]:
        yield scope + value.name
        for number in value.value:  # enum values are siblings of their enum (C++ scoping)
            yield scope + number.name

    def message(scope: str, value: descriptor_pb2.DescriptorProto) -> Iterator[str]:
        name = scope + value.name
        yield name
        for field in (*value.field, *value.extension):
            yield f"{name}.{field.name}"
        for oneof in value.oneof_decl:
            yield f"{name}.{oneof.name}"
        for nested in value.nested_type:
            yield from message(f"{name}.", nested)
        for nested_enum in value.enum_type:
            yield from enum(f"{name}.", nested_enum)

    for top_message in file.message_type:
        yield from message(package, top_message)
    for top_enum in file.enum_type:
        yield from enum(package, top_enum)
    for extension in file.extension:
        yield package + extension.name
    for service in file.service:
        yield package + service.name
        for method in service.method:
            yield f"{package}{service.name}.{method.name}"


class ContractFile:
    """A file as grpc_reflection reads it (name, dependencies, CopyToProto), whose proto keeps
    its source info."""

    def __init__(self, proto: descriptor_pb2.FileDescriptorProto, dependencies: list[ContractFile]) -> None:
        self.name = proto.name
        self.dependencies = dependencies
        self._proto = proto

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        proto.CopyFrom(self._proto)


class ContractPool:
    """The part of the DescriptorPool interface that grpc_reflection's servicer uses: files by
    name and by symbol (methods and enum values included), messages and extensions."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self._pool = descriptor_pool.DescriptorPool()
        self._files: dict[str, ContractFile] = {}
        self._file_of: dict[str, str] = {}
        for proto in files:  # dependencies first, as protoc writes a set with --include_imports
            if proto.name in self._files:
                continue
            missing = [name for name in proto.dependency if name not in self._files]
            if missing:
                raise ValueError(f"{proto.name} comes before its imports {missing}")
            self._pool.Add(proto)
            self._files[proto.name] = ContractFile(proto, [self._files[name] for name in proto.dependency])
            for symbol in _symbols(proto):
                self._file_of.setdefault(symbol, proto.name)

    def FindFileByName(self, name: str) -> ContractFile:
        return self._files[name]

    def FindFileContainingSymbol(self, symbol: str) -> ContractFile:
        return self._files[self._file_of[symbol.lstrip(".")]]

    def FindMessageTypeByName(self, name: str) -> Descriptor:
        return self._pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Descriptor, number: int) -> FieldDescriptor:
        return self._pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Descriptor) -> list[FieldDescriptor]:
        return list(self._pool.FindAllExtensions(message))


def served_alongside() -> list[descriptor_pb2.FileDescriptorProto]:
    """The health and reflection services the server also serves, and the google.rpc error details
    its refusals carry (grpcurl resolves them to print them), with their imports first, as their
    Python packages compile them (without comments)."""
    ordered: dict[str, bytes] = {}

    def visit(file: Any) -> None:  # a FileDescriptor of the generated modules
        for dependency in file.dependencies:
            visit(dependency)
        ordered.setdefault(file.name, file.serialized_pb)

    for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR):
        visit(file)
    return [descriptor_pb2.FileDescriptorProto.FromString(serialized) for serialized in ordered.values()]


def _default_json_name(name: str) -> str:
    """protoc's lowerCamelCase of a field name: underscores dropped, the letter after one upper-cased."""
    out, upper = [], False
    for char in name:
        if char == "_":
            upper = True
        else:
            out.append(char.upper() if upper else char)
            upper = False
    return "".join(out)


def _drop_default_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Keeps json_name only where the .proto sets it, as in the descriptors compiled into the
    generated modules. protoc fills it in for every field of a descriptor set, and grpcurl prints
    JSON with the json_name it finds, else with the field's own name: without this, grpcurl's
    replies would turn from account_id to accountId."""

    def message(value: descriptor_pb2.DescriptorProto) -> None:
        for field in (*value.field, *value.extension):
            if field.json_name == _default_json_name(field.name):
                field.ClearField("json_name")
        for nested in value.nested_type:
            message(nested)

    for value in file.message_type:
        message(value)
    for extension in file.extension:
        if extension.json_name == _default_json_name(extension.name):
            extension.ClearField("json_name")


def build(protoc_set: Path, out: Path) -> None:
    """Writes the descriptor set `make protos` commits: protoc's (the seat contract, its imports,
    its comments) and the health and reflection services, so that `grpcurl -protoset` reaches
    every service of the server without reflection."""
    files = load_descriptor_set(protoc_set)
    for file in files.file:
        _drop_default_json_names(file)
    present = {file.name for file in files.file}
    files.file.extend(file for file in served_alongside() if file.name not in present)
    ContractPool(files.file)  # refuses a set that does not load
    out.write_bytes(files.SerializeToString(deterministic=True))


def reflection_pool(path: Path = DESCRIPTOR_SET) -> descriptor_pool.DescriptorPool:
    """The pool to give reflection.ReflectionServicer: every service the server serves, the seat
    contract with its comments. Typed as a DescriptorPool, the type the servicer declares, though it
    only has what the servicer calls."""
    return cast(descriptor_pool.DescriptorPool, ContractPool(load_descriptor_set(path).file))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m service.contract PROTOC_DESCRIPTOR_SET OUT", file=sys.stderr)
        return 2
    build(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
