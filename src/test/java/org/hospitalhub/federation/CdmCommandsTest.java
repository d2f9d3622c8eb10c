package org.hospitalhub.federation;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Map;

import org.hospitalhub.federation.cdm.CdmCommands;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.postgresql.PGConnection;

/**
 * The clinical-schema commands against the real PostgreSQL (a database of this test's own): cdm-generate is
 * deterministic, a CDM CSV export loads back identically with cdm-load, and a broken export is refused naming file,
 * line and column with nothing loaded.
 */
class CdmCommandsTest {

    static final String DB = System.getProperty("hub.test.db", "hospital_hub_test") + "_cdm";
    static final String URL = "jdbc:postgresql://127.0.0.1:5432/" + DB;
    static final Map<String, String> ENV = Map.of("HUB_DB_USERNAME", "postgres");
    static final List<String> TABLES = List.of("person", "observation_period", "visit_occurrence", "condition_occurrence",
            "drug_exposure", "procedure_occurrence", "measurement", "observation", "death", "concept", "concept_ancestor");

    @BeforeAll
    static void database() throws SQLException {
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + DB + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + DB);
        }
    }

    record Result(int code, String out, String err) {
    }

    static Result run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int code = CdmCommands.run(args, ENV, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    static String query(String sql) throws SQLException {
        try (Connection c = DriverManager.getConnection(URL, "postgres", ""); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    static String fingerprint(String schema, String table) throws SQLException {
        return query("SELECT COUNT(*) || ':' || COALESCE(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM " + schema + "." + table + " t");
    }

    @Test
    void generateIsDeterministic() throws SQLException {
        Result first = run("cdm-generate", "--jdbc", URL, "--schema", "gen_a", "--persons", "300", "--seed", "7");
        assertEquals(0, first.code(), first.err());
        assertTrue(first.out().startsWith("OK: Counts[persons=300"), first.out());
        assertEquals(0, run("cdm-generate", "--jdbc", URL, "--schema", "gen_b", "--persons", "300", "--seed", "7").code());
        assertEquals(0, run("cdm-generate", "--jdbc", URL, "--schema", "gen_c", "--persons", "300", "--seed", "8").code());
        for (String t : TABLES) {
            assertEquals(fingerprint("gen_a", t), fingerprint("gen_b", t), t);
        }
        assertTrue(!fingerprint("gen_a", "measurement").equals(fingerprint("gen_c", "measurement")), "another seed, other data");
        assertEquals("300", query("SELECT COUNT(*) FROM gen_a.person"));
        // plausible distributions: roughly half women, ages spread, HbA1c higher in diabetics
        int women = Integer.parseInt(query("SELECT COUNT(*) FROM gen_a.person WHERE gender_concept_id = 8532"));
        assertTrue(women > 100 && women < 200, "women: " + women);
        double diabetic = Double.parseDouble(query("SELECT AVG(value_as_number) FROM gen_a.measurement m WHERE measurement_concept_id = 3004410"
                + " AND EXISTS (SELECT 1 FROM gen_a.condition_occurrence c WHERE c.person_id = m.person_id AND condition_concept_id = 201826)"));
        double other = Double.parseDouble(query("SELECT AVG(value_as_number) FROM gen_a.measurement m WHERE measurement_concept_id = 3004410"
                + " AND NOT EXISTS (SELECT 1 FROM gen_a.condition_occurrence c WHERE c.person_id = m.person_id AND condition_concept_id IN (201826, 201254))"));
        assertTrue(diabetic > other + 1, diabetic + " vs " + other);
    }

    /** Writes the tables of a schema as a CDM CSV export (header row, one file per table; some upper-case names). */
    static void export(String schema, Path dir) throws SQLException, IOException {
        try (Connection c = DriverManager.getConnection(URL, "postgres", "")) {
            for (String t : TABLES) {
                String name = t.equals("person") || t.equals("death") ? t.toUpperCase() : t;
                try (Writer w = Files.newBufferedWriter(dir.resolve(name + ".csv"))) {
                    c.unwrap(PGConnection.class).getCopyAPI().copyOut("COPY " + schema + "." + t + " TO STDOUT (FORMAT csv, HEADER)", w);
                }
            }
        }
    }

    @Test
    void anExportLoadsBackIdentically(@TempDir Path dir) throws Exception {
        assertEquals(0, run("cdm-generate", "--jdbc", URL, "--schema", "exp_src", "--persons", "200", "--seed", "3").code());
        export("exp_src", dir);
        Result load = run("cdm-load", "--jdbc", URL, "--schema", "exp_dst", dir.toString());
        assertEquals(0, load.code(), load.err());
        assertTrue(load.out().contains("person=200"), load.out());
        for (String t : TABLES) {
            assertEquals(fingerprint("exp_src", t), fingerprint("exp_dst", t), t);
        }
    }

    @Test
    void aBrokenExportIsRefusedNamingFileLineAndColumnAndNothingIsLoaded(@TempDir Path dir) throws Exception {
        assertEquals(0, run("cdm-generate", "--jdbc", URL, "--schema", "bad_src", "--persons", "50", "--seed", "4").code());
        export("bad_src", dir);
        List<String> m = Files.readAllLines(dir.resolve("measurement.csv"));
        String[] cells = m.get(2).split(",", -1);
        int value = List.of(m.get(0).split(",")).indexOf("value_as_number");
        cells[value] = "abc";
        m.set(2, String.join(",", cells));
        Files.write(dir.resolve("measurement.csv"), m);
        List<String> p = Files.readAllLines(dir.resolve("PERSON.csv"));
        p.set(0, p.get(0).replace("person_source_value", "patient_name"));
        Files.write(dir.resolve("PERSON.csv"), p);
        List<String> d = Files.readAllLines(dir.resolve("drug_exposure.csv"));
        String[] dcells = d.get(4).split(",", -1);
        int start = List.of(d.get(0).split(",")).indexOf("drug_exposure_start_date");
        dcells[start] = "2024-13-45";
        d.set(4, String.join(",", dcells));
        Files.write(dir.resolve("drug_exposure.csv"), d);
        Files.writeString(dir.resolve("patients_private.csv"), "x\n1\n");

        Result r = run("cdm-load", "--jdbc", URL, "--schema", "bad_dst", dir.toString());
        assertEquals(1, r.code(), r.out());
        assertTrue(r.err().contains("measurement.csv:3: column value_as_number: 'abc' is not a valid numeric"), r.err());
        assertTrue(r.err().contains("PERSON.csv:1: column 17 'patient_name' is not a column of person")
                || r.err().matches("(?s).*PERSON.csv:1: column \\d+ 'patient_name' is not a column of person.*"), r.err());
        assertTrue(r.err().contains("drug_exposure.csv:5: column drug_exposure_start_date: '2024-13-45' is not a valid date"), r.err());
        assertTrue(r.err().contains("patients_private.csv: not a CDM table"), r.err());
        for (String t : TABLES) {
            assertEquals("0", query("SELECT COUNT(*) FROM bad_dst." + t), t + " must stay empty");
        }
    }

    @Test
    void wrongUsageExitsWithTwo() {
        assertEquals(2, run("cdm-generate", "--jdbc", URL).code());
        assertEquals(2, run("cdm-init", "--jdbc", "jdbc:mysql://x/y").code());
        Result bad = run("cdm-init", "--jdbc", URL, "--schema", "cdm; DROP SCHEMA public");
        assertEquals(2, bad.code());
        assertTrue(bad.err().contains("clinical schema name"), bad.err());
    }
}
