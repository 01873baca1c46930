/**
 * Decodes an OTLP `ExportTraceServiceRequest` in protobuf (`application/x-protobuf`) into the
 * shape of its OTLP/JSON form (ids as hex, times as decimal strings, `kind` and `status.code`
 * as integers), so that the test receiver reads both protocols with one code path.
 *
 * No dependency: the protobuf wire format is four kinds of field, and the messages are those of
 * opentelemetry-proto (`collector/trace/v1/trace_service.proto`, `trace/v1/trace.proto`,
 * `common/v1/common.proto`, `resource/v1/resource.proto`); field numbers are noted where read.
 * Unknown fields are skipped, as protobuf readers do.
 */

/** A field's raw value: a varint or fixed64 as bigint, a fixed32 as number, a length-delimited field as bytes. */
type WireValue = bigint | number | Uint8Array;

/** One message's fields by number, each with every occurrence (repeated fields keep their order). */
type Fields = Map<number, WireValue[]>;

/** Thrown when the bytes are not a protobuf message (truncated, or a wire type protobuf does not have). */
export class OtlpProtobufError extends Error {
  override readonly name = 'OtlpProtobufError';
}

function readVarint(bytes: Uint8Array, at: { offset: number }): bigint {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    if (at.offset >= bytes.length) throw new OtlpProtobufError('truncated varint');
    const byte = bytes[at.offset++]!;
    result |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return result;
    shift += 7n;
    if (shift > 63n) throw new OtlpProtobufError('varint longer than 10 bytes');
  }
}

function fieldsOf(bytes: Uint8Array): Fields {
  const fields: Fields = new Map();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = { offset: 0 };
  while (at.offset < bytes.length) {
    const tag = Number(readVarint(bytes, at));
    const field = tag >>> 3;
    let value: WireValue;
    switch (tag & 7) {
      case 0:
        value = readVarint(bytes, at);
        break;
      case 1:
        if (at.offset + 8 > bytes.length) throw new OtlpProtobufError(`truncated fixed64 in field ${field}`);
        value = view.getBigUint64(at.offset, true);
        at.offset += 8;
        break;
      case 2: {
        const length = Number(readVarint(bytes, at));
        if (at.offset + length > bytes.length) throw new OtlpProtobufError(`truncated field ${field}: ${length} bytes announced`);
        value = bytes.subarray(at.offset, at.offset + length);
        at.offset += length;
        break;
      }
      case 5:
        if (at.offset + 4 > bytes.length) throw new OtlpProtobufError(`truncated fixed32 in field ${field}`);
        value = view.getUint32(at.offset, true);
        at.offset += 4;
        break;
      default:
        throw new OtlpProtobufError(`wire type ${tag & 7} (field ${field}) is not one protobuf 3 writes`);
    }
    const list = fields.get(field);
    if (list === undefined) fields.set(field, [value]);
    else list.push(value);
  }
  return fields;
}

const bytesOf = (fields: Fields, field: number): Uint8Array[] => (fields.get(field) ?? []).filter((value): value is Uint8Array => value instanceof Uint8Array);
const firstBytes = (fields: Fields, field: number): Uint8Array | undefined => bytesOf(fields, field)[0];
const stringOf = (fields: Fields, field: number): string | undefined => {
  const bytes = firstBytes(fields, field);
  return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
};
const bigintOf = (fields: Fields, field: number): bigint | undefined => {
  const value = fields.get(field)?.at(-1);
  return typeof value === 'bigint' ? value : undefined;
};
const hexOf = (bytes: Uint8Array | undefined): string | undefined => (bytes === undefined || bytes.length === 0 ? undefined : Buffer.from(bytes).toString('hex'));
const messages = <T>(fields: Fields, field: number, decode: (fields: Fields) => T): T[] => bytesOf(fields, field).map((bytes) => decode(fieldsOf(bytes)));

/** AnyValue: 1 string, 2 bool, 3 int64, 4 double, 5 ArrayValue (1 values), 6 KeyValueList (1 values), 7 bytes. */
function anyValue(fields: Fields): Record<string, unknown> {
  const [field, values] = [...fields].at(-1) ?? [];
  const value = values?.at(-1);
  switch (field) {
    case 1:
      return { stringValue: new TextDecoder().decode(value as Uint8Array) };
    case 2:
      return { boolValue: value === 1n };
    case 3:
      return { intValue: BigInt.asIntN(64, value as bigint).toString() };
    case 4: {
      const buffer = new DataView(new ArrayBuffer(8));
      buffer.setBigUint64(0, value as bigint, true);
      return { doubleValue: buffer.getFloat64(0, true) };
    }
    case 5:
      return { arrayValue: { values: messages(fieldsOf(value as Uint8Array), 1, anyValue) } };
    case 6:
      return { kvlistValue: { values: messages(fieldsOf(value as Uint8Array), 1, keyValue) } };
    case 7:
      return { bytesValue: Buffer.from(value as Uint8Array).toString('base64') };
    default:
      return {};
  }
}

/** KeyValue: 1 key, 2 value. */
function keyValue(fields: Fields): Record<string, unknown> {
  const value = firstBytes(fields, 2);
  return { key: stringOf(fields, 1) ?? '', value: value === undefined ? {} : anyValue(fieldsOf(value)) };
}

/** Span: 1 trace_id, 2 span_id, 3 trace_state, 4 parent_span_id, 5 name, 6 kind, 7/8 start/end (fixed64), 9 attributes, 11 events, 13 links, 15 status. */
function span(fields: Fields): Record<string, unknown> {
  const status = firstBytes(fields, 15);
  const statusFields = status === undefined ? undefined : fieldsOf(status);
  return {
    traceId: hexOf(firstBytes(fields, 1)),
    spanId: hexOf(firstBytes(fields, 2)),
    traceState: stringOf(fields, 3),
    parentSpanId: hexOf(firstBytes(fields, 4)),
    name: stringOf(fields, 5) ?? '',
    kind: Number(bigintOf(fields, 6) ?? 0n),
    startTimeUnixNano: (bigintOf(fields, 7) ?? 0n).toString(),
    endTimeUnixNano: (bigintOf(fields, 8) ?? 0n).toString(),
    attributes: messages(fields, 9, keyValue),
    // Event: 1 time (fixed64), 2 name, 3 attributes.
    events: messages(fields, 11, (event) => ({
      timeUnixNano: (bigintOf(event, 1) ?? 0n).toString(),
      name: stringOf(event, 2) ?? '',
      attributes: messages(event, 3, keyValue),
    })),
    // Link: 1 trace_id, 2 span_id, 3 trace_state, 4 attributes.
    links: messages(fields, 13, (link) => ({
      traceId: hexOf(firstBytes(link, 1)),
      spanId: hexOf(firstBytes(link, 2)),
      attributes: messages(link, 4, keyValue),
    })),
    // Status: 2 message, 3 code.
    status: statusFields === undefined ? {} : { message: stringOf(statusFields, 2), code: Number(bigintOf(statusFields, 3) ?? 0n) },
  };
}

/**
 * An `ExportTraceServiceRequest` in protobuf, as the object its OTLP/JSON form parses to:
 * `resourceSpans[].resource.attributes`, `scopeSpans[].scope`, `scopeSpans[].spans[]`.
 * Throws {@link OtlpProtobufError} for bytes that are not a protobuf message.
 *
 * @example
 * ```ts
 * const request = decodeTraceRequest(body);
 * request.resourceSpans[0]?.scopeSpans[0]?.spans[0]?.traceId; // '5b8efff798038103d269b633813fc60c'
 * ```
 */
export function decodeTraceRequest(bytes: Uint8Array): { resourceSpans: Record<string, any>[] } {
  // ExportTraceServiceRequest: 1 resource_spans. ResourceSpans: 1 resource (1 attributes), 2 scope_spans.
  return {
    resourceSpans: messages(fieldsOf(bytes), 1, (resourceSpans) => {
      const resource = firstBytes(resourceSpans, 1);
      return {
        resource: { attributes: resource === undefined ? [] : messages(fieldsOf(resource), 1, keyValue) },
        // ScopeSpans: 1 scope (InstrumentationScope: 1 name, 2 version), 2 spans.
        scopeSpans: messages(resourceSpans, 2, (scopeSpans) => {
          const scope = firstBytes(scopeSpans, 1);
          const scopeFields = scope === undefined ? undefined : fieldsOf(scope);
          return {
            scope: scopeFields === undefined ? {} : { name: stringOf(scopeFields, 1), version: stringOf(scopeFields, 2) },
            spans: messages(scopeSpans, 2, span),
          };
        }),
      };
    }),
  };
}
