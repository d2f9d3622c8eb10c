package org.hospitalhub.federation.cdm;

import java.io.IOException;
import java.io.Reader;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.MappingIterator;
import com.fasterxml.jackson.dataformat.csv.CsvMapper;
import com.fasterxml.jackson.dataformat.csv.CsvParser;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyIn;

/**
 * Loads an OMOP CDM CSV export (one file per table, named after it, e.g. {@code person.csv} or {@code PERSON.csv},
 * with a header row of CDM column names) into a node's CDM schema. Everything is checked before anything is written:
 * file names against the CDM tables, header names against the table's columns (from the database's own catalogue),
 * required columns present, every value parsed as its column's type (integer, numeric, date as yyyy-MM-dd or
 * yyyyMMdd, timestamp, text within its length). Errors name file, line and column; then nothing is loaded. A valid
 * export is loaded in one transaction (PostgreSQL COPY per table), appended to what the tables hold.
 */
public final class CdmCsvLoader {

    static final List<String> TABLES = List.of("concept", "concept_ancestor", "person", "observation_period",
            "visit_occurrence", "condition_occurrence", "drug_exposure", "procedure_occurrence", "measurement",
            "observation", "death");
    private static final int MAX_ERRORS = 20;

    /** A column of a CDM table as the database describes it. */
    record Column(String name, String type, int length, boolean required) {
    }

    /** What was loaded, per table (rows). */
    public record Loaded(Map<String, Long> rows) {
    }

    /** The export is invalid: every problem found (up to 20), each naming file, line and column. */
    public static class InvalidExportException extends Exception {
        private final List<String> problems;

        InvalidExportException(List<String> problems) {
            super(problems.size() + " problem(s) in the CDM export; nothing was loaded:\n  " + String.join("\n  ", problems));
            this.problems = List.copyOf(problems);
        }

        public List<String> problems() {
            return problems;
        }
    }

    private CdmCsvLoader() {
    }

    public static Loaded load(Connection c, String schema, Path dir) throws SQLException, IOException, InvalidExportException {
        String s = CdmSchema.checkName(schema);
        Map<String, Path> files = new LinkedHashMap<>();
        List<String> problems = new ArrayList<>();
        try (Stream<Path> list = Files.list(dir)) {
            for (Path f : list.sorted().toList()) {
                String name = f.getFileName().toString();
                if (!name.toLowerCase(Locale.ROOT).endsWith(".csv")) {
                    continue;
                }
                String table = name.substring(0, name.length() - 4).toLowerCase(Locale.ROOT);
                if (!TABLES.contains(table)) {
                    problems.add(name + ": not a CDM table this hub loads (" + String.join(", ", TABLES) + ")");
                } else {
                    files.put(table, f);
                }
            }
        }
        if (files.isEmpty() && problems.isEmpty()) {
            problems.add(dir + ": no CSV files");
        }
        Map<String, List<String[]>> rows = new LinkedHashMap<>();
        Map<String, List<String>> headers = new LinkedHashMap<>();
        for (String table : TABLES) { // parent tables first
            Path f = files.get(table);
            if (f == null) {
                continue;
            }
            Map<String, Column> columns = columns(c, s, table);
            List<String[]> parsed = new ArrayList<>();
            List<String> header = read(f, columns, parsed, problems);
            headers.put(table, header);
            rows.put(table, parsed);
            if (problems.size() >= MAX_ERRORS) {
                break;
            }
        }
        if (!problems.isEmpty()) {
            throw new InvalidExportException(problems.subList(0, Math.min(MAX_ERRORS, problems.size())));
        }
        boolean auto = c.getAutoCommit();
        c.setAutoCommit(false);
        Map<String, Long> counts = new LinkedHashMap<>();
        try {
            PGConnection pg = c.unwrap(PGConnection.class);
            for (var e : rows.entrySet()) {
                CopyIn in = pg.getCopyAPI().copyIn("COPY " + s + "." + e.getKey() + " (" + String.join(", ", headers.get(e.getKey()))
                        + ") FROM STDIN (FORMAT csv)");
                try {
                    StringBuilder sb = new StringBuilder();
                    for (String[] r : e.getValue()) {
                        for (int i = 0; i < r.length; i++) {
                            if (i > 0) {
                                sb.append(',');
                            }
                            if (r[i] != null) {
                                sb.append('"').append(r[i].replace("\"", "\"\"")).append('"');
                            }
                        }
                        sb.append('\n');
                        if (sb.length() > 1 << 20) {
                            byte[] b = sb.toString().getBytes(StandardCharsets.UTF_8);
                            in.writeToCopy(b, 0, b.length);
                            sb.setLength(0);
                        }
                    }
                    byte[] b = sb.toString().getBytes(StandardCharsets.UTF_8);
                    in.writeToCopy(b, 0, b.length);
                    counts.put(e.getKey(), in.endCopy());
                } finally {
                    if (in.isActive()) {
                        in.cancelCopy();
                    }
                }
            }
            c.commit();
        } catch (SQLException | RuntimeException e) {
            c.rollback();
            throw e;
        } finally {
            c.setAutoCommit(auto);
        }
        return new Loaded(counts);
    }

    private static Map<String, Column> columns(Connection c, String schema, String table) throws SQLException {
        Map<String, Column> out = new LinkedHashMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT column_name, data_type, COALESCE(character_maximum_length, 0),"
                + " is_nullable FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position")) {
            ps.setString(1, schema);
            ps.setString(2, table);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    out.put(rs.getString(1), new Column(rs.getString(1), rs.getString(2), rs.getInt(3), "NO".equals(rs.getString(4))));
                }
            }
        }
        if (out.isEmpty()) {
            throw new SQLException("schema " + schema + " has no table " + table + ": run cdm-init first");
        }
        return out;
    }

    private static final DateTimeFormatter BASIC = DateTimeFormatter.BASIC_ISO_DATE;

    /** Reads one file into rows of text checked against the columns; returns the header (column names, lower case). */
    private static List<String> read(Path f, Map<String, Column> columns, List<String[]> out, List<String> problems)
            throws IOException {
        String file = f.getFileName().toString();
        CsvMapper mapper = new CsvMapper().enable(CsvParser.Feature.WRAP_AS_ARRAY);
        try (Reader r = Files.newBufferedReader(f, StandardCharsets.UTF_8);
                MappingIterator<String[]> it = mapper.readerFor(String[].class).readValues(r)) {
            if (!it.hasNext()) {
                problems.add(file + ": empty file (a header row of CDM column names is required)");
                return List.of();
            }
            String[] head = it.next();
            int before = problems.size();
            List<Column> cols = new ArrayList<>();
            for (int i = 0; i < head.length; i++) {
                String name = head[i].strip().toLowerCase(Locale.ROOT);
                Column col = columns.get(name);
                if (col == null) {
                    problems.add(file + ":1: column " + (i + 1) + " '" + head[i] + "' is not a column of " + tableOf(file)
                            + " (columns: " + String.join(", ", columns.keySet()) + ")");
                } else if (cols.contains(col)) {
                    problems.add(file + ":1: column '" + name + "' appears twice");
                }
                cols.add(col);
            }
            for (Column col : columns.values()) {
                if (col.required() && !cols.contains(col)) {
                    problems.add(file + ":1: required column '" + col.name() + "' is missing");
                }
            }
            if (problems.size() > before) {
                return List.of();
            }
            while (it.hasNext()) {
                String[] row;
                long line = it.getCurrentLocation().getLineNr();
                try {
                    row = it.next();
                } catch (RuntimeException e) {
                    problems.add(file + ":" + line + ": not valid CSV: " + e.getMessage());
                    return List.of();
                }
                line = it.getCurrentLocation().getLineNr() - 1;
                if (row.length == 1 && row[0].isEmpty()) {
                    continue; // blank line
                }
                if (row.length != cols.size()) {
                    problems.add(file + ":" + line + ": " + row.length + " values, the header has " + cols.size());
                } else {
                    for (int i = 0; i < row.length; i++) {
                        row[i] = check(file, line, cols.get(i), row[i], problems);
                    }
                    out.add(row);
                }
                if (problems.size() >= MAX_ERRORS) {
                    return List.of();
                }
            }
            return cols.stream().map(Column::name).toList();
        }
    }

    private static String tableOf(String file) {
        return file.substring(0, file.length() - 4).toLowerCase(Locale.ROOT);
    }

    /** The value as COPY should read it (null for an empty field), or records a problem. */
    private static String check(String file, long line, Column col, String raw, List<String> problems) {
        String v = raw == null ? "" : raw.strip();
        String where = file + ":" + line + ": column " + col.name() + ": ";
        if (v.isEmpty()) {
            if (col.required()) {
                problems.add(where + "a value is required");
            }
            return null;
        }
        try {
            switch (col.type()) {
                case "integer", "bigint" -> Long.parseLong(v);
                case "numeric" -> new BigDecimal(v);
                case "date" -> v = (v.length() == 8 ? LocalDate.parse(v, BASIC) : LocalDate.parse(v)).toString();
                case "timestamp without time zone" -> v = LocalDateTime.parse(v.replace(' ', 'T')).toString();
                default -> {
                    if (col.length() > 0 && v.length() > col.length()) {
                        problems.add(where + "longer than " + col.length() + " characters");
                    }
                }
            }
        } catch (NumberFormatException | DateTimeParseException e) {
            problems.add(where + "'" + (v.length() > 40 ? v.substring(0, 40) + "..." : v) + "' is not a valid " + col.type()
                    + (col.type().equals("date") ? " (yyyy-MM-dd or yyyyMMdd)" : ""));
        }
        return v;
    }
}
