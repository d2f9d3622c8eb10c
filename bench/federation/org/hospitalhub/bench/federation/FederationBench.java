package org.hospitalhub.bench.federation;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.flywaydb.core.Flyway;
import org.hospitalhub.federation.StepContext;
import org.hospitalhub.federation.cdm.CdmSchema;
import org.hospitalhub.federation.cdm.SyntheticCdm;
import org.hospitalhub.federation.study.StudySteps;
import org.postgresql.ds.PGSimpleDataSource;

/**
 * Issue #4 section 7, first half: a study's cohort, variables and analysis steps on one synthetic node of N persons
 * (default 1,000,000), timed per step, with the hub's own classes (the jar's StudySteps on PostgreSQL, the same code a
 * node runs). Run by bench/run-federation.sh; writes the federation section of bench/RESULTS.md.
 */
public final class FederationBench {

    static final String START = "<!-- federation-benchmark:start (written by bench/run-federation.sh; the other benchmarks keep it) -->";
    static final String END = "<!-- federation-benchmark:end -->";

    static final String COHORT = """
            {"version": 1,
             "entry": {"domain": "condition", "conceptSet": {"concepts": [201820], "includeDescendants": true}},
             "firstEventOnly": true, "priorObservationDays": 365, "age": {"min": 30},
             "exclusion": [{"domain": "drug", "conceptSet": {"concepts": [1596977]}, "window": {"startDays": -3650, "endDays": 0}}]}""";
    static final String VARIABLES = """
            {"version": 1, "variables": [
              {"name": "age", "kind": "ageAtIndex"},
              {"name": "sex", "kind": "gender"},
              {"name": "htn", "kind": "presence", "criterion": {"domain": "condition", "conceptSet": {"concepts": [316866]},
                 "window": {"startDays": -36500, "endDays": 0}}},
              {"name": "metformin", "kind": "presence", "criterion": {"domain": "drug", "conceptSet": {"concepts": [1503297]},
                 "window": {"startDays": 0, "endDays": 365}}},
              {"name": "hba1c_last", "kind": "measurementValue", "statistic": "last", "criterion": {"domain": "measurement",
                 "conceptSet": {"concepts": [3004410]}, "window": {"startDays": -365, "endDays": 365}}},
              {"name": "sbp_max", "kind": "measurementValue", "statistic": "max", "criterion": {"domain": "measurement",
                 "conceptSet": {"concepts": [3004249]}, "window": {"startDays": -36500, "endDays": 36500}}},
              {"name": "visits", "kind": "count", "criterion": {"domain": "visit", "conceptSet": {"concepts": [9202]},
                 "window": {"startDays": -365, "endDays": 365}}}]}""";
    static final String ANALYSIS = """
            {"version": 1, "analyses": [
              {"name": "n", "kind": "count"},
              {"name": "age", "kind": "numeric", "variable": "age"},
              {"name": "hba1c", "kind": "numeric", "variable": "hba1c_last"},
              {"name": "sex", "kind": "proportion", "variable": "sex"},
              {"name": "sbp_by_htn", "kind": "tTest", "variable": "sbp_max", "groupBy": "htn"},
              {"name": "metformin_by_sex", "kind": "chiSquare", "variable": "metformin", "groupBy": "sex"}]}""";

    public static void main(String[] args) throws Exception {
        int persons = args.length > 0 ? Integer.parseInt(args[0]) : 1_000_000;
        Path results = Path.of(args.length > 1 ? args[1] : "bench/RESULTS.md");
        String command = args.length > 2 ? args[2] : "bench/run-federation.sh " + persons;
        String db = "bench_federation";
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + db);
        }
        PGSimpleDataSource ds = new PGSimpleDataSource();
        ds.setUrl("jdbc:postgresql://127.0.0.1:5432/" + db);
        ds.setUser("postgres");
        Flyway.configure().dataSource(ds).locations("classpath:db/migration").load().migrate();
        CdmSchema.migrate(ds, "cdm");

        List<String[]> rows = new ArrayList<>();
        String loadStart = load();
        long t0 = System.nanoTime();
        SyntheticCdm.Counts counts;
        try (Connection c = ds.getConnection()) {
            counts = SyntheticCdm.generate(c, "cdm", persons, 42);
        }
        double generate = (System.nanoTime() - t0) / 1e9;
        System.out.printf("generated %s in %.1f s%n", counts, generate);

        StudySteps node = new StudySteps(ds, "cdm", 5, Optional.empty(), 180, 5);
        ObjectMapper json = new ObjectMapper();
        String[][] steps = { { "cohort", COHORT }, { "variables", VARIABLES }, { "analysis", ANALYSIS } };
        JsonNode last = null;
        for (int run = 1; run <= 2; run++) { // the second run sees warm caches, as a node re-executing a step would
            String project = "bench-" + run;
            for (String[] step : steps) {
                Map<String, String> deps = switch (step[0]) {
                    case "variables" -> Map.of("cohort", project + "-cohort");
                    case "analysis" -> Map.of("cohort", project + "-cohort", "variables", project + "-variables");
                    default -> Map.of();
                };
                long s0 = System.nanoTime();
                last = node.execute(new StepContext(project, project + "-" + step[0], step[0], json.readTree(step[1]),
                        "aggregate-only", deps));
                double secs = (System.nanoTime() - s0) / 1e9;
                String detail = switch (step[0]) {
                    case "cohort" -> last.get("persons") + " persons";
                    case "variables" -> last.get("variables").size() + " variables × " + last.get("entries") + " entries";
                    default -> last.get("analyses").size() + " analyses";
                };
                System.out.printf("run %d %-9s %8.2f s  %s%n", run, step[0], secs, detail);
                rows.add(new String[] { String.valueOf(run), step[0], String.format("%.2f", secs), detail });
            }
        }
        String loadEnd = load();
        StringBuilder md = new StringBuilder();
        md.append("## Federation: study steps on one node (issue #4, section 7)\n\n");
        md.append("Command:\n\n    ").append(command).append("\n\n");
        md.append("| | |\n|---|---|\n");
        md.append("| date | ").append(ZonedDateTime.now().format(DateTimeFormatter.RFC_1123_DATE_TIME)).append(" |\n");
        md.append("| machine | ").append(Runtime.getRuntime().availableProcessors()).append(" cores, load average at start ")
                .append(loadStart).append(", at end ").append(loadEnd).append(" |\n");
        md.append("| java | ").append(System.getProperty("java.vm.name")).append(' ').append(System.getProperty("java.version")).append(" |\n");
        md.append("| database | ").append(pgVersion(ds)).append(" |\n");
        md.append("| node | ").append(counts).append(", generated (COPY, one transaction) in ")
                .append(String.format("%.1f s", generate)).append(" |\n\n");
        md.append("| run | step | seconds | result |\n|---|---|---|---|\n");
        for (String[] r : rows) {
            md.append("| ").append(String.join(" | ", r)).append(" |\n");
        }
        md.append("\nDefinitions: first diagnosis of diabetes mellitus (with descendants) at 30 or older, a year observed before,"
                + " no insulin in the 10 years before; 7 variables (age, sex, hypertension, metformin after index, last HbA1c,"
                + " maximum systolic BP, outpatient visits ±1 year); 6 analyses (count, 2 numeric summaries with exact"
                + " histograms, a proportion, a t-test, a chi-square). Run 2 repeats run 1 as a new project on warm caches."
                + " The study fanned out to 20 nodes (the second half of section 7) is measured by"
                + " bench/run-federation-fanout.sh (its own section).\n");
        write(results, md.toString());
        System.out.println(md);
    }

    static String load() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).split(" ", 4)[0] + " (1 min)";
        } catch (Exception e) {
            return String.format("%.2f", ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
        }
    }

    static String pgVersion(PGSimpleDataSource ds) throws Exception {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT current_setting('server_version'), current_setting('shared_buffers'),"
                        + " current_setting('work_mem')")) {
            rs.next();
            return "PostgreSQL " + rs.getString(1) + " (shared_buffers " + rs.getString(2) + ", work_mem " + rs.getString(3) + ")";
        }
    }

    static void write(Path file, String text) throws Exception {
        write(file, text, START, END);
    }

    /** Replaces the section between the markers (or appends it), keeping the rest of the file. */
    static void write(Path file, String text, String START, String END) throws Exception {
        String section = START + "\n" + text.strip() + "\n" + END;
        String old = Files.exists(file) ? Files.readString(file) : "";
        int a = old.indexOf(START);
        int b = old.indexOf(END);
        String out = a >= 0 && b > a ? old.substring(0, a) + section + old.substring(b + END.length())
                : (old.isBlank() ? "" : old.stripTrailing() + "\n\n") + section + "\n";
        Files.writeString(file, out);
    }
}
