/**
 * The structure Kibana 8.x gives each saved-object type we ship, written down from Kibana's own sources (read,
 * not copied; see README "Kibana"): the attribute schemas (`schema.object` rejects unknown keys unless it says
 * otherwise), the migration versions, and the reference conventions the import resolves. `check()` returns every
 * deviation as a message; an empty list means the object has the documented shape.
 */

export interface SavedObject {
  type: string;
  id: string;
  attributes: Record<string, unknown>;
  references: Array<{ name: string; type: string; id: string }>;
  coreMigrationVersion?: string;
  typeMigrationVersion?: string;
  [k: string]: unknown;
}

type Kind = "string" | "boolean" | "number" | "object" | "array" | "any";
interface Attr {
  kind: Kind;
  required?: boolean;
}
const req = (kind: Kind): Attr => ({ kind, required: true });
const opt = (kind: Kind): Attr => ({ kind });

interface TypeSpec {
  /** attribute keys and their types; keys not listed are rejected */
  attrs: Record<string, Attr>;
  /** the newest migration version Kibana 8.x registers for the type: a higher typeMigrationVersion is refused */
  latestMigration: string;
  extra?: (o: SavedObject, all: SavedObject[]) => string[];
}

// Top-level keys of an exported saved object (SavedObjectsExportResult lines).
const OBJECT_KEYS = new Set([
  "type",
  "id",
  "attributes",
  "references",
  "coreMigrationVersion",
  "typeMigrationVersion",
  "migrationVersion",
  "managed",
  "namespaces",
  "originId",
  "version",
  "updated_at",
  "created_at",
]);

const SPECS: Record<string, TypeSpec> = {
  // data_views: DataViewAttributes (no config-schema; the type's migrations end at 7.11.0, 8.0.0 = namespace conversion)
  "index-pattern": {
    latestMigration: "8.0.0",
    attrs: {
      title: req("string"),
      name: opt("string"),
      timeFieldName: opt("string"),
      fields: opt("string"),
      type: opt("string"),
      typeMeta: opt("string"),
      sourceFilters: opt("string"),
      fieldFormatMap: opt("string"),
      fieldAttrs: opt("string"),
      runtimeFieldMap: opt("string"),
      allowNoIndex: opt("boolean"),
      allowHidden: opt("boolean"),
    },
  },
  // saved_search: schemas['8.8.0'] (SCHEMA_SEARCH_V8_8_0); migrations up to 8.0.0, model versions from 8.10
  search: {
    latestMigration: "8.0.0",
    attrs: {
      title: req("string"),
      description: opt("string"),
      columns: opt("array"),
      sort: opt("array"),
      grid: opt("object"),
      rowHeight: opt("number"),
      rowsPerPage: opt("number"),
      hideChart: opt("boolean"),
      breakdownField: opt("string"),
      kibanaSavedObjectMeta: req("object"),
      isTextBasedQuery: opt("boolean"),
      usesAdHocDataView: opt("boolean"),
      timeRestore: opt("boolean"),
      timeRange: opt("object"),
      refreshInterval: opt("object"),
      viewMode: opt("string"),
      hideAggregatedPreview: opt("boolean"),
      hits: opt("number"),
      version: opt("number"),
      sampleSize: opt("number"),
      headerRowHeight: opt("number"),
    },
    extra: (o) => {
      const out: string[] = [];
      const sort = (o.attributes.sort as unknown[] | undefined) ?? [];
      for (const s of sort)
        if (
          !Array.isArray(s) ||
          s.length !== 2 ||
          !s.every((x) => typeof x === "string") ||
          !["asc", "desc"].includes(String(s[1]))
        )
          out.push(`sort entry ${JSON.stringify(s)} is not [field, "asc"|"desc"]`);
      for (const c of (o.attributes.columns as unknown[] | undefined) ?? [])
        if (typeof c !== "string") out.push(`column ${JSON.stringify(c)} is not a string`);
      return out.concat(searchSourceChecks(o, true));
    },
  },
  // lens: content-management v1 lensAttributesSchema (unknowns forbidden); migrations end at 8.9.0
  lens: {
    latestMigration: "8.9.0",
    attrs: {
      title: req("string"),
      description: opt("string"),
      visualizationType: opt("string"),
      state: opt("any"),
      uiStateJSON: opt("string"),
      visState: opt("string"),
      savedSearchRefName: opt("string"),
    },
    extra: (o) => lensChecks(o),
  },
  // dashboard: dashboardAttributesSchema v1 (unknowns forbidden) / v2 (controlGroupInput.showApplySelections)
  dashboard: {
    latestMigration: "8.9.0",
    attrs: {
      title: req("string"),
      description: opt("string"),
      kibanaSavedObjectMeta: req("object"),
      timeRestore: opt("boolean"),
      timeFrom: opt("string"),
      timeTo: opt("string"),
      refreshInterval: opt("object"),
      controlGroupInput: opt("object"),
      panelsJSON: opt("string"),
      optionsJSON: opt("string"),
      hits: opt("number"),
      version: opt("number"),
    },
    extra: (o, all) => dashboardChecks(o, all),
  },
};

const kindOf = (v: unknown): Kind => (Array.isArray(v) ? "array" : v === null ? "any" : (typeof v as Kind));

/** a.b.c ≤ x.y.z */
export const versionLte = (a: string, b: string): boolean => {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  return true;
};

function parseJson(s: unknown, what: string, out: string[]): unknown {
  if (typeof s !== "string") {
    out.push(`${what} is not a JSON string`);
    return undefined;
  }
  try {
    return JSON.parse(s);
  } catch {
    out.push(`${what} is not valid JSON`);
    return undefined;
  }
}

/** searchSourceJSON: query {query, language}, filter array, the data view by indexRefName → a reference. */
function searchSourceChecks(o: SavedObject, needsIndex: boolean): string[] {
  const out: string[] = [];
  const meta = o.attributes.kibanaSavedObjectMeta as { searchSourceJSON?: unknown } | undefined;
  const ss = parseJson(meta?.searchSourceJSON, "kibanaSavedObjectMeta.searchSourceJSON", out) as
    | {
        query?: { query?: unknown; language?: unknown };
        filter?: unknown;
        indexRefName?: unknown;
        index?: unknown;
      }
    | undefined;
  if (!ss) return out;
  if (
    ss.query &&
    (typeof ss.query.query !== "string" || !["kuery", "lucene"].includes(String(ss.query.language)))
  )
    out.push("searchSourceJSON.query is not {query: string, language: kuery|lucene}");
  if (ss.filter !== undefined && !Array.isArray(ss.filter))
    out.push("searchSourceJSON.filter is not an array");
  if (ss.index !== undefined)
    out.push("searchSourceJSON.index must be extracted to indexRefName + a reference");
  if (needsIndex) {
    const ref = o.references.find((r) => r.name === ss.indexRefName);
    if (ref?.type !== "index-pattern")
      out.push(`indexRefName ${String(ss.indexRefName)} names no index-pattern reference`);
  }
  return out;
}

const OPERATIONS: Record<string, { bucketed: boolean; dataType?: string }> = {
  date_histogram: { bucketed: true, dataType: "date" },
  terms: { bucketed: true },
  count: { bucketed: false, dataType: "number" },
};

function lensChecks(o: SavedObject): string[] {
  const out: string[] = [];
  const state = o.attributes.state as
    | {
        datasourceStates?: Record<
          string,
          {
            layers?: Record<
              string,
              { columnOrder?: string[]; columns?: Record<string, Record<string, unknown>> }
            >;
          }
        >;
        visualization?: {
          layers?: Array<{
            layerId: string;
            xAccessor?: string;
            splitAccessor?: string;
            accessors?: string[];
            layerType?: string;
          }>;
        };
        query?: { query?: unknown; language?: unknown };
        filters?: unknown;
      }
    | undefined;
  if (!state) return ["lens has no state"];
  const ds = state.datasourceStates ?? {};
  // 8.6.0 renamed the datasource "indexpattern" to "formBased"
  if (!ds.formBased) out.push("datasourceStates.formBased missing (8.6+ name of the form-based datasource)");
  if (ds.indexpattern) out.push("datasourceStates.indexpattern is the pre-8.6 name");
  const layers = ds.formBased?.layers ?? {};
  for (const [id, layer] of Object.entries(layers)) {
    if (
      !o.references.some(
        (r) => r.name === `indexpattern-datasource-layer-${id}` && r.type === "index-pattern",
      )
    )
      out.push(`layer ${id} has no reference indexpattern-datasource-layer-${id}`);
    const cols = layer.columns ?? {};
    if (JSON.stringify([...(layer.columnOrder ?? [])].sort()) !== JSON.stringify(Object.keys(cols).sort()))
      out.push(`layer ${id}: columnOrder does not list exactly its columns`);
    for (const [cid, c] of Object.entries(cols)) {
      const op = OPERATIONS[String(c.operationType)];
      if (!op) out.push(`column ${cid}: operation ${String(c.operationType)} not checked here`);
      else {
        if (c.isBucketed !== op.bucketed) out.push(`column ${cid}: isBucketed must be ${op.bucketed}`);
        if (op.dataType && c.dataType !== op.dataType)
          out.push(`column ${cid}: dataType must be ${op.dataType}`);
      }
      // 8.1.0 renamed the count source field "Records" to "___records___"
      if (c.operationType === "count" && c.sourceField !== "___records___")
        out.push(`column ${cid}: count must use ___records___`);
      if (typeof c.label !== "string") out.push(`column ${cid}: label missing`);
    }
  }
  for (const l of state.visualization?.layers ?? []) {
    const cols = layers[l.layerId]?.columns ?? {};
    if (!layers[l.layerId]) out.push(`visualization layer ${l.layerId} has no datasource layer`);
    for (const a of [l.xAccessor, l.splitAccessor, ...(l.accessors ?? [])])
      if (a !== undefined && !cols[a])
        out.push(`visualization layer ${l.layerId}: accessor ${a} is no column`);
    // 7.15.0 added layerType
    if (l.layerType !== "data") out.push(`visualization layer ${l.layerId}: layerType must be "data"`);
  }
  if (typeof state.query?.query !== "string") out.push("state.query is not {query, language}");
  if (!Array.isArray(state.filters)) out.push("state.filters is not an array");
  return out;
}

function dashboardChecks(o: SavedObject, all: SavedObject[]): string[] {
  const out: string[] = searchSourceChecks(o, false);
  const panels = parseJson(o.attributes.panelsJSON, "panelsJSON", out) as
    | Array<Record<string, unknown>>
    | undefined;
  const ids = new Set(all.map((x) => `${x.type}:${x.id}`));
  for (const p of panels ?? []) {
    const g = p.gridData as Record<string, unknown> | undefined;
    if (!g || !["x", "y", "w", "h"].every((k) => Number.isInteger(g[k])) || g.i !== p.panelIndex)
      out.push(`panel ${String(p.panelIndex)}: gridData is not {x, y, w, h, i = panelIndex}`);
    else if ((g.x as number) + (g.w as number) > 48)
      out.push(`panel ${String(p.panelIndex)}: wider than the 48-column grid`);
    // 7.11.0 moved panel ids to references named "<panelIndex>:<panelRefName>"
    const ref = o.references.find((r) => r.name === `${String(p.panelIndex)}:${String(p.panelRefName)}`);
    if (!ref)
      out.push(
        `panel ${String(p.panelIndex)}: no reference ${String(p.panelIndex)}:${String(p.panelRefName)}`,
      );
    else if (ref.type !== p.type)
      out.push(`panel ${String(p.panelIndex)}: type ${String(p.type)} but reference type ${ref.type}`);
    else if (!ids.has(`${ref.type}:${ref.id}`))
      out.push(`panel ${String(p.panelIndex)}: ${ref.type} ${ref.id} not in the file`);
  }
  const cg = o.attributes.controlGroupInput as Record<string, unknown> | undefined;
  if (cg) {
    const known = new Set([
      "panelsJSON",
      "controlStyle",
      "chainingSystem",
      "ignoreParentSettingsJSON",
      "showApplySelections",
    ]);
    for (const k of Object.keys(cg))
      if (!known.has(k)) out.push(`controlGroupInput.${k} is not in the schema`);
    parseJson(cg.ignoreParentSettingsJSON, "controlGroupInput.ignoreParentSettingsJSON", out);
    const controls = parseJson(cg.panelsJSON, "controlGroupInput.panelsJSON", out) as
      | Record<string, { type?: string; order?: number; explicitInput?: { id?: string; fieldName?: string } }>
      | undefined;
    for (const [id, c] of Object.entries(controls ?? {})) {
      if (c.explicitInput?.id !== id) out.push(`control ${id}: explicitInput.id differs`);
      if (!["optionsListControl", "rangeSliderControl", "timeSlider"].includes(String(c.type)))
        out.push(`control ${id}: unknown type`);
      // 8.x extracts a control's data view to a reference "controlGroup_<id>:<type>DataView"
      if (
        c.type === "optionsListControl" &&
        !o.references.some(
          (r) => r.name === `controlGroup_${id}:optionsListDataView` && r.type === "index-pattern",
        )
      )
        out.push(`control ${id}: no reference controlGroup_${id}:optionsListDataView`);
    }
  }
  return out;
}

export function check(o: SavedObject, all: SavedObject[]): string[] {
  const where = `${o.type} ${o.id}`;
  const spec = SPECS[o.type];
  if (!spec) return [`${where}: type ${o.type} is not one this checker knows`];
  const out: string[] = [];
  for (const k of Object.keys(o)) if (!OBJECT_KEYS.has(k)) out.push(`unknown top-level key ${k}`);
  if (typeof o.id !== "string" || o.id === "") out.push("id missing");
  if (o.coreMigrationVersion !== "8.8.0")
    out.push("coreMigrationVersion must be 8.8.0 (the 8.x core format)");
  if (!o.typeMigrationVersion)
    out.push("typeMigrationVersion missing: Kibana would run every migration from 0");
  else if (!versionLte(o.typeMigrationVersion, spec.latestMigration))
    out.push(
      `typeMigrationVersion ${o.typeMigrationVersion} is newer than ${o.type}'s last migration ${spec.latestMigration}: import refused`,
    );
  for (const r of o.references)
    if (Object.keys(r).some((k) => !["name", "type", "id"].includes(k)) || !r.name || !r.type || !r.id)
      out.push(`reference ${JSON.stringify(r)} is not {name, type, id}`);
  for (const [k, v] of Object.entries(o.attributes)) {
    const a = spec.attrs[k];
    if (!a) out.push(`attribute ${k} is not in the ${o.type} schema`);
    else if (a.kind !== "any" && kindOf(v) !== a.kind) out.push(`attribute ${k} must be ${a.kind}`);
  }
  for (const [k, a] of Object.entries(spec.attrs))
    if (a.required && o.attributes[k] === undefined) out.push(`required attribute ${k} missing`);
  out.push(...(spec.extra?.(o, all) ?? []));
  return out.map((m) => `${where}: ${m}`);
}
