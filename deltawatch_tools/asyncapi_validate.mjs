// Parse an AsyncAPI document with the official parser (and its Avro schema parser) and print
// its diagnostics as JSON on stdout, for deltawatch_tools/asyncapi_parser.py.
// Usage: node asyncapi_validate.mjs <document>
import { Parser, fromFile } from '@asyncapi/parser';
import { AvroSchemaParser } from '@asyncapi/avro-schema-parser';

const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const { document, diagnostics } = await fromFile(parser, process.argv[2]).parse();
process.stdout.write(JSON.stringify({
  parsed: document !== undefined,
  diagnostics: diagnostics.map((d) => ({
    code: d.code, severity: d.severity, message: d.message, path: d.path,
  })),
}));
