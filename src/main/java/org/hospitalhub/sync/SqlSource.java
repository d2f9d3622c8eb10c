package org.hospitalhub.sync;

import java.time.DateTimeException;
import java.time.ZoneId;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;
import java.util.regex.Pattern;

/**
 * One {@code sql-poll-source} instance: which table of which datasource to read, how to find the next rows (a
 * high-water mark or a status column) and how a row maps to the event envelope. Built from the template's parameters
 * and validated before any SQL is run: table and column names are put into SQL text, so only plain identifiers are
 * accepted; every value is bound as a parameter.
 */
public record SqlSource(
        String sourceId,
        String datasource,
        String table,
        Mode mode,
        String idColumn,
        String watermarkColumn,
        String statusColumn,
        String newValue,
        String doneValue,
        String failedValue,
        String eventIdColumn,
        String type,
        String typeColumn,
        String keyColumn,
        String occurredAtColumn,
        String payloadColumn,
        String hospital,
        String hospitalColumn,
        String source,
        int batchSize,
        ZoneId timeZone) {

    public static final String HUB_DATASOURCE = "hub";
    static final int MAX_BATCH_SIZE = 10_000;

    /** A table, optionally schema-qualified. Stricter than "letters, digits, _ and .": no empty part. */
    static final Pattern TABLE = Pattern.compile("[A-Za-z_][A-Za-z0-9_]{0,62}(\\.[A-Za-z_][A-Za-z0-9_]{0,62}){0,2}");
    static final Pattern COLUMN = Pattern.compile("[A-Za-z_][A-Za-z0-9_]{0,62}");
    static final Pattern CODE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}");
    static final Pattern DATASOURCE = Pattern.compile("[A-Za-z0-9_\\-]{1,100}");

    public enum Mode {
        /** Rows past the high-water mark (hub_poll_mark) of a monotonically increasing column. */
        WATERMARK,
        /** Rows whose status column holds newValue; set to doneValue (or failedValue) once taken. */
        STATUS
    }

    public String leaseName() {
        return "sql-poll:" + sourceId;
    }

    public boolean inHubDatabase() {
        return HUB_DATASOURCE.equals(datasource);
    }

    /** In watermark mode: a second ordering column that breaks ties of the watermark column, or null. */
    public String tieBreaker() {
        return mode == Mode.WATERMARK && idColumn != null && !idColumn.equalsIgnoreCase(watermarkColumn) ? idColumn : null;
    }

    /** The columns this source reads by name (for the start-up probe). */
    public List<String> columns() {
        Set<String> cols = new LinkedHashSet<>();
        for (String c : new String[] { idColumn, watermarkColumn, statusColumn, eventIdColumn, typeColumn, keyColumn,
                occurredAtColumn, payloadColumn, hospitalColumn }) {
            if (c != null) {
                cols.add(c);
            }
        }
        return List.copyOf(cols);
    }

    // ---- SQL text: identifiers validated above, values always bound ----------------------------------------------

    String probeSql() {
        return "SELECT " + String.join(", ", columns()) + " FROM " + table + " WHERE 1 = 0";
    }

    /** Watermark mode, nothing read yet. One parameter: the limit. */
    String firstBatchSql() {
        return "SELECT * FROM " + table + " WHERE " + watermarkColumn + " IS NOT NULL ORDER BY " + order() + " LIMIT ?";
    }

    /** Watermark mode: rows past the mark. Parameters: mark (or mark, mark, tie-breaker mark), then the limit. */
    String nextBatchSql() {
        String tie = tieBreaker();
        String where = tie == null ? watermarkColumn + " > ?"
                : "(" + watermarkColumn + " > ? OR (" + watermarkColumn + " = ? AND " + tie + " > ?))";
        return "SELECT * FROM " + table + " WHERE " + where + " ORDER BY " + order() + " LIMIT ?";
    }

    private String order() {
        String tie = tieBreaker();
        return tie == null ? watermarkColumn : watermarkColumn + ", " + tie;
    }

    /** Status mode. Parameters: newValue, limit. */
    String pendingSql() {
        return "SELECT * FROM " + table + " WHERE " + statusColumn + " = ? ORDER BY " + idColumn + " LIMIT ?";
    }

    /** Status mode. Parameters: the new status, the row id, newValue (a row changed meanwhile is left alone). */
    String markRowSql() {
        return "UPDATE " + table + " SET " + statusColumn + " = ? WHERE " + idColumn + " = ? AND " + statusColumn + " = ?";
    }

    // ---- building and validating ----------------------------------------------------------------------------------

    /**
     * Builds a source from the template parameters (already placeholder-resolved). Throws
     * {@link IllegalArgumentException} listing every problem, each naming the parameter.
     */
    public static SqlSource from(Map<String, String> params) {
        List<String> errors = new ArrayList<>();
        Function<String, String> get = name -> {
            String v = params.get(name);
            return v == null || v.isBlank() ? null : v.strip();
        };
        String sourceId = get.apply("sourceId");
        String prefix = "sql-poll-source " + (sourceId == null ? "(no sourceId)" : sourceId) + ": ";
        if (sourceId == null) {
            errors.add("sourceId is required");
        } else if (!CODE.matcher(sourceId).matches()) {
            errors.add("sourceId '" + sourceId + "' must be 1 to 100 letters, digits and . _ - (it names the lease, "
                    + "the high-water mark and the metrics)");
        }
        String datasource = get.apply("datasource");
        if (datasource == null) {
            datasource = HUB_DATASOURCE;
        } else if (!DATASOURCE.matcher(datasource).matches()) {
            errors.add("datasource '" + datasource + "' is not a datasource name");
        }
        String table = identifier(get, "table", TABLE, true, errors);
        String modeText = get.apply("mode");
        Mode mode = null;
        if (modeText == null) {
            mode = Mode.WATERMARK;
        } else {
            try {
                mode = Mode.valueOf(modeText.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                errors.add("mode '" + modeText + "' must be watermark or status");
            }
        }
        String idColumn = identifier(get, "idColumn", COLUMN, false, errors);
        String watermarkColumn = identifier(get, "watermarkColumn", COLUMN, false, errors);
        String statusColumn = identifier(get, "statusColumn", COLUMN, false, errors);
        String newValue = get.apply("newValue");
        String doneValue = get.apply("doneValue");
        String failedValue = get.apply("failedValue");
        if (mode == Mode.WATERMARK) {
            if (watermarkColumn == null) {
                watermarkColumn = idColumn;
            }
            if (get.apply("watermarkColumn") == null && get.apply("idColumn") == null) {
                errors.add("mode watermark needs watermarkColumn (a monotonically increasing column: a bigint id, "
                        + "a sequence, a timestamp) or idColumn");
            }
            if (statusColumn != null) {
                errors.add("statusColumn is for mode status; this source is in mode watermark");
            }
        } else if (mode == Mode.STATUS) {
            if (get.apply("idColumn") == null) {
                errors.add("mode status needs idColumn (the row's unique key, to mark it done)");
            }
            if (get.apply("statusColumn") == null) {
                errors.add("mode status needs statusColumn");
            }
            if (newValue == null || doneValue == null) {
                errors.add("mode status needs newValue (rows to take) and doneValue (rows taken)");
            }
            if (failedValue == null) {
                failedValue = doneValue;
            }
            if (newValue != null && (newValue.equals(doneValue) || newValue.equals(failedValue))) {
                errors.add("newValue must differ from doneValue and failedValue, or rows would be read forever");
            }
        }
        String eventIdColumn = identifier(get, "eventIdColumn", COLUMN, false, errors);
        if (get.apply("eventIdColumn") == null && get.apply("idColumn") == null) {
            errors.add("eventIdColumn is required (or idColumn, then the eventId is <sourceId>:<idColumn>)");
        }
        String type = get.apply("type");
        String typeColumn = identifier(get, "typeColumn", COLUMN, false, errors);
        if ((type == null) == (get.apply("typeColumn") == null)) {
            errors.add("give exactly one of type (one event type for every row) and typeColumn");
        }
        String keyColumn = identifier(get, "keyColumn", COLUMN, false, errors);
        String occurredAtColumn = identifier(get, "occurredAtColumn", COLUMN, true, errors);
        String payloadColumn = identifier(get, "payloadColumn", COLUMN, true, errors);
        String hospital = get.apply("hospital");
        String hospitalColumn = identifier(get, "hospitalColumn", COLUMN, false, errors);
        if ((hospital == null) == (get.apply("hospitalColumn") == null)) {
            errors.add("give exactly one of hospital (a hospital code for every row) and hospitalColumn");
        } else if (hospital != null && !CODE.matcher(hospital).matches()) {
            errors.add("hospital '" + hospital + "' must be a hospital code of letters, digits and . _ -");
        }
        String source = get.apply("source");
        if (source == null) {
            errors.add("source is required (the source system's code, e.g. his)");
        } else if (!CODE.matcher(source).matches()) {
            errors.add("source '" + source + "' must be a system code of letters, digits and . _ -");
        }
        int batchSize = 0;
        String batch = get.apply("batchSize");
        try {
            batchSize = batch == null ? 500 : Integer.parseInt(batch);
            if (batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
                errors.add("batchSize must be between 1 and " + MAX_BATCH_SIZE + ", got " + batchSize);
            }
        } catch (NumberFormatException e) {
            errors.add("batchSize '" + batch + "' is not a number");
        }
        ZoneId zone = null;
        String zoneText = get.apply("timeZone");
        try {
            zone = zoneText == null ? ZoneId.of("UTC") : ZoneId.of(zoneText);
        } catch (DateTimeException e) {
            errors.add("timeZone '" + zoneText + "' is not a time zone (e.g. Asia/Shanghai, +08:00, UTC)");
        }
        if (!errors.isEmpty()) {
            throw new IllegalArgumentException(prefix + String.join("; ", errors));
        }
        return new SqlSource(sourceId, datasource, table, mode, idColumn, watermarkColumn, statusColumn, newValue,
                doneValue, failedValue, eventIdColumn, type, typeColumn, keyColumn, occurredAtColumn, payloadColumn,
                hospital, hospitalColumn, source, batchSize, zone);
    }

    private static String identifier(Function<String, String> get, String name, Pattern pattern, boolean required,
            List<String> errors) {
        String v = get.apply(name);
        if (v == null) {
            if (required) {
                errors.add(name + " is required");
            }
            return null;
        }
        if (!pattern.matcher(v).matches()) {
            errors.add(name + " '" + v + "' is not a plain SQL identifier ("
                    + (pattern == TABLE ? "[schema.]table" : "column") + ": a letter or _, then letters, digits, _)");
            return null;
        }
        return v;
    }
}
