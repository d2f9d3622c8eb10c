package org.hospitalhub.federation;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;

import jakarta.inject.Inject;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

import org.apache.commons.math3.stat.inference.ChiSquareTest;
import org.apache.commons.math3.stat.inference.TTest;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.federation.cdm.CdmSchema;
import org.hospitalhub.federation.cdm.SyntheticCdm;
import org.hospitalhub.federation.study.ResultPooling;
import org.hospitalhub.federation.study.StudyCompiler;
import org.hospitalhub.federation.study.StudyExecutor;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Study steps on synthetic OMOP CDM nodes in the real PostgreSQL: definitions compiled to SQL (hostile ones refused),
 * results checked against independent computations (the generator's own patient histories, PostgreSQL's aggregate
 * functions, Commons Math's tests on the raw values), small cells suppressed, clean and re-execute, and results of two
 * nodes pooled equal to the same steps on one schema holding the union of their data.
 */
@QuarkusTest
@QuarkusTestResource(value = PostgresResource.class, restrictToAnnotatedClass = false)
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class StudyStepsTest {

    static final ObjectMapper JSON = new ObjectMapper();
    static final long SEED_A = 11, SEED_B = 22;
    static final int PERSONS_A = 3000, PERSONS_B = 2000, FIRST_B = 100_001;

    @Inject
    Database db;

    StudyExecutor nodeA, nodeB, union;

    @BeforeAll
    void nodes() throws SQLException {
        for (String s : List.of("cdm_a", "cdm_b", "cdm_u")) {
            CdmSchema.migrate(db.dataSource(), s);
        }
        try (Connection c = db.connection()) {
            SyntheticCdm.generate(c, "cdm_a", 1, PERSONS_A, SEED_A);
            SyntheticCdm.generate(c, "cdm_b", FIRST_B, PERSONS_B, SEED_B);
            SyntheticCdm.generate(c, "cdm_u", 1, 1, SEED_A); // vocabulary; rows replaced below
            try (Statement s = c.createStatement()) {
                for (String t : List.of("person", "observation_period", "visit_occurrence", "condition_occurrence",
                        "drug_exposure", "procedure_occurrence", "measurement", "observation", "death")) {
                    s.execute("DELETE FROM cdm_u." + t);
                    s.execute("INSERT INTO cdm_u." + t + " SELECT * FROM cdm_a." + t);
                    s.execute("INSERT INTO cdm_u." + t + " SELECT * FROM cdm_b." + t);
                }
            }
        }
        nodeA = executor("cdm_a");
        nodeB = executor("cdm_b");
        union = executor("cdm_u");
    }

    StudyExecutor executor(String schema) {
        return new StudyExecutor(db, true, schema, 5, Optional.of("test-only-pseudonym-key"), 180, 5);
    }

    static JsonNode json(String s) {
        try {
            return JSON.readTree(s);
        } catch (Exception e) {
            throw new IllegalArgumentException(e);
        }
    }

    // Type 2 or type 1 diabetes (through the concept hierarchy), first diagnosis, aged 30+, a year observed before.
    static final String DIABETES_COHORT = """
            {"version": 1,
             "entry": {"domain": "condition", "conceptSet": {"concepts": [201820], "includeDescendants": true}},
             "firstEventOnly": true, "priorObservationDays": 365, "age": {"min": 30}}""";
    static final String VARIABLES = """
            {"version": 1, "variables": [
              {"name": "age", "kind": "ageAtIndex"},
              {"name": "sex", "kind": "gender"},
              {"name": "htn", "kind": "presence", "criterion": {"domain": "condition",
                 "conceptSet": {"concepts": [316866]}, "window": {"startDays": -36500, "endDays": 0}}},
              {"name": "metformin", "kind": "presence", "criterion": {"domain": "drug",
                 "conceptSet": {"concepts": [1503297], "includeDescendants": false}, "window": {"startDays": 0, "endDays": 3650}}},
              {"name": "sbp_max", "kind": "measurementValue", "statistic": "max", "criterion": {"domain": "measurement",
                 "conceptSet": {"concepts": [3004249]}, "window": {"startDays": -36500, "endDays": 36500}}},
              {"name": "visits", "kind": "count", "criterion": {"domain": "visit", "conceptSet": {"concepts": [9202]},
                 "window": {"startDays": -365, "endDays": 365}}}]}""";
    static final String ANALYSIS = """
            {"version": 1, "analyses": [
              {"name": "n", "kind": "count"},
              {"name": "age", "kind": "numeric", "variable": "age"},
              {"name": "sbp", "kind": "numeric", "variable": "sbp_max"},
              {"name": "sex", "kind": "proportion", "variable": "sex"},
              {"name": "sbp_by_htn", "kind": "tTest", "variable": "sbp_max", "groupBy": "htn"},
              {"name": "htn_by_sex", "kind": "chiSquare", "variable": "htn", "groupBy": "sex"}]}""";

    JsonNode run(StepExecutor node, String project, String step, String kind, String def, Map<String, String> deps,
            String sharing) throws Exception {
        return node.execute(new StepContext(project, step, kind, json(def), sharing, deps));
    }

    /** Cohort, variables and analysis of the diabetes study on one node; returns the analysis output. */
    JsonNode study(StepExecutor node, String project) throws Exception {
        run(node, project, project + "-c", "cohort", DIABETES_COHORT, Map.of(), "aggregate-only");
        run(node, project, project + "-v", "variables", VARIABLES, Map.of("cohort", project + "-c"), "aggregate-only");
        return run(node, project, project + "-a", "analysis", ANALYSIS, Map.of("cohort", project + "-c", "variables", project + "-v"),
                "aggregate-only");
    }

    @Test
    void hostileAndInvalidDefinitionsAreRefusedNamingTheField() {
        StudyCompiler compiler = new StudyCompiler("cdm_a");
        Map<String, String> cases = Map.of(
                "{\"version\":1,\"entry\":{\"domain\":\"condition; DROP TABLE cdm_a.person\",\"conceptSet\":{\"concepts\":[1]}}}", "$.entry.domain",
                "{\"version\":1,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[\"1 OR 1=1\"]}}}", "$.entry.conceptSet.concepts[0]",
                "{\"version\":1,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[1]}},\"sql\":\"SELECT 1\"}", "$.sql",
                "{\"version\":1,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[1]}},\"gender\":[\"male' OR '1'='1\"]}", "$.gender[0]",
                "{\"version\":1,\"entry\":{\"domain\":\"drug\",\"conceptSet\":{\"concepts\":[1]},\"value\":{\"min\":1}}}", "$.entry.value",
                "{\"version\":1,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[1]}},\"inclusion\":[{\"domain\":\"drug\",\"conceptSet\":{\"concepts\":[1]},\"window\":{\"startDays\":10,\"endDays\":-10}}]}", "$.inclusion[0].window",
                "{\"version\":2,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[1]}}}", "$.version",
                "{\"version\":1,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[1]}},\"age\":{\"min\":\"18; --\"}}", "$.age.min");
        cases.forEach((def, field) -> {
            StepDefinitionException e = assertThrows(StepDefinitionException.class, () -> compiler.cohort(json(def)), def);
            assertEquals(field, e.field(), e.getMessage());
        });
        StepDefinitionException v = assertThrows(StepDefinitionException.class, () -> compiler.variables(json(
                "{\"version\":1,\"variables\":[{\"name\":\"x\\\"; DROP TABLE person; --\",\"kind\":\"ageAtIndex\"}]}")));
        assertEquals("$.variables[0].name", v.field());
        StepDefinitionException a = assertThrows(StepDefinitionException.class, () -> run(nodeA, "p-bad", "p-bad-a", "analysis",
                "{\"version\":1,\"analyses\":[{\"name\":\"n\",\"kind\":\"median\",\"variable\":\"age\"}]}",
                Map.of("variables", "none"), "aggregate-only"));
        assertEquals("dependsOn.variables", a.field());
        assertThrows(StepDefinitionException.class, () -> run(nodeA, "p-bad", "p-bad-v", "variables", VARIABLES,
                Map.of(), "aggregate-only"));
    }

    @Test
    void cohortMatchesThePatientHistoriesTheGeneratorWrote() throws Exception {
        JsonNode out = run(nodeA, "p-cohort", "p-cohort-c", "cohort", DIABETES_COHORT, Map.of(), "aggregate-only");
        List<Integer> expected = new ArrayList<>();
        for (int id = 1; id <= PERSONS_A; id++) {
            var p = SyntheticCdm.person(SEED_A, id);
            long first = p.conditions().stream().filter(c -> c[0] == SyntheticCdm.TYPE2_DIABETES || c[0] == SyntheticCdm.TYPE1_DIABETES)
                    .mapToLong(c -> c[1]).min().orElse(Long.MIN_VALUE);
            if (first == Long.MIN_VALUE) {
                continue;
            }
            int age = LocalDate.ofEpochDay(first).getYear() - p.yearOfBirth();
            if (age >= 30 && first - p.obsStart() >= 365 && first <= p.obsEnd()) {
                expected.add(id);
            }
        }
        assertTrue(expected.size() > 50, "the generator should give a sizeable diabetic cohort, got " + expected.size());
        assertEquals(expected.size(), out.get("persons").asInt(), out.toString());
        assertEquals(expected, ids("SELECT person_id FROM study_cohort_member WHERE step_id = 'p-cohort-c' ORDER BY person_id"));
    }

    /**
     * Variables read once per cohort member, with concept sets through their descendants and windows around the index
     * date, equal what the generator wrote into each member's history (counted here in Java, not in SQL).
     */
    @Test
    void variablesThroughDescendantsInWindowsMatchThePatientHistoriesTheGeneratorWrote() throws Exception {
        run(nodeA, "p-var", "p-var-c", "cohort", DIABETES_COHORT, Map.of(), "aggregate-only");
        JsonNode out = run(nodeA, "p-var", "p-var-v", "variables", """
                {"version": 1, "variables": [
                  {"name": "htn5y", "kind": "presence", "criterion": {"domain": "condition",
                     "conceptSet": {"concepts": [316866]}, "window": {"startDays": -1825, "endDays": 0}}},
                  {"name": "antidiabetic90d", "kind": "presence", "criterion": {"domain": "drug",
                     "conceptSet": {"concepts": [21600712]}, "window": {"startDays": 0, "endDays": 90}}},
                  {"name": "sbp_max2y", "kind": "measurementValue", "statistic": "max", "criterion": {"domain": "measurement",
                     "conceptSet": {"concepts": [3004249]}, "window": {"startDays": -365, "endDays": 365}}},
                  {"name": "hba1c_n", "kind": "count", "criterion": {"domain": "measurement",
                     "conceptSet": {"concepts": [3004410]}, "window": {"startDays": -730, "endDays": 730}}}]}""",
                Map.of("cohort", "p-var-c"), "aggregate-only");
        Map<String, String> expected = new TreeMap<>();
        for (int id = 1; id <= PERSONS_A; id++) {
            var p = SyntheticCdm.person(SEED_A, id);
            long index = p.conditions().stream().filter(c -> c[0] == SyntheticCdm.TYPE2_DIABETES || c[0] == SyntheticCdm.TYPE1_DIABETES)
                    .mapToLong(c -> c[1]).min().orElse(Long.MIN_VALUE);
            if (index == Long.MIN_VALUE || LocalDate.ofEpochDay(index).getYear() - p.yearOfBirth() < 30
                    || index - p.obsStart() < 365 || index > p.obsEnd()) {
                continue;
            }
            boolean htn = p.conditions().stream().anyMatch(c -> (c[0] == SyntheticCdm.HYPERTENSIVE_DISORDER
                    || c[0] == SyntheticCdm.ESSENTIAL_HYPERTENSION) && c[1] >= index - 1825 && c[1] <= index);
            boolean antidiabetic = p.drugs().stream().anyMatch(d -> (d[0] == SyntheticCdm.METFORMIN || d[0] == SyntheticCdm.INSULIN
                    || d[0] == SyntheticCdm.ANTIDIABETICS) && d[1] >= index && d[1] <= index + 90);
            java.util.OptionalDouble sbp = p.measurements().stream().filter(m -> m[0] == SyntheticCdm.SYSTOLIC_BP
                    && m[1] >= index - 365 && m[1] <= index + 365).mapToDouble(m -> m[2]).max();
            long hba1c = p.measurements().stream().filter(m -> m[0] == SyntheticCdm.HBA1C && m[1] >= index - 730
                    && m[1] <= index + 730).count();
            expected.put(id + "/htn5y", htn ? "1" : "0");
            expected.put(id + "/antidiabetic90d", antidiabetic ? "1" : "0");
            if (sbp.isPresent()) {
                expected.put(id + "/sbp_max2y", Long.toString(Math.round(sbp.getAsDouble())));
            }
            expected.put(id + "/hba1c_n", Long.toString(hba1c));
        }
        Map<String, String> actual = new TreeMap<>();
        try (Connection c = db.connection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                "SELECT person_id, name, num_value FROM study_variable_value WHERE step_id = 'p-var-v' AND num_value IS NOT NULL")) {
            while (rs.next()) {
                actual.put(rs.getInt(1) + "/" + rs.getString(2), rs.getBigDecimal(3).stripTrailingZeros().toPlainString());
            }
        }
        assertTrue(expected.values().stream().filter("1"::equals).count() > 20, "the generator should give members with each condition");
        assertEquals(expected, actual);
        // the step's own summary: per variable, how many cohort entries have a value (a small count shown as "<5")
        for (JsonNode v : out.get("variables")) {
            long n = expected.keySet().stream().filter(k -> k.endsWith("/" + v.get("name").asText())).count();
            assertEquals(n < 5 ? "<5" : Long.toString(n), v.get("nonMissing").asText(), v.toString());
        }
        assertTrue(out.get("variables").get(2).get("nonMissing").asLong() < out.get("entries").asLong(),
                "some members have no blood pressure in the window: " + out);
    }

    @Test
    void analysisMatchesPostgresAggregatesAndCommonsMath() throws Exception {
        JsonNode out = study(nodeA, "p-an").get("analyses");
        try (Connection c = db.connection(); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT COUNT(*), AVG(num_value), STDDEV_SAMP(num_value),"
                        + " PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY num_value), PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY num_value),"
                        + " PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY num_value) FROM study_variable_value"
                        + " WHERE step_id = 'p-an-v' AND name = 'sbp_max' AND num_value IS NOT NULL")) {
            rs.next();
            JsonNode sbp = out.get("sbp");
            assertEquals(rs.getLong(1), sbp.get("n").asLong());
            assertEquals(rs.getDouble(2), sbp.get("mean").asDouble(), 1e-9);
            assertEquals(rs.getDouble(3), sbp.get("sd").asDouble(), 1e-9);
            assertEquals(rs.getDouble(4), sbp.get("median").asDouble(), 1e-9);
            assertEquals(rs.getDouble(5), sbp.get("q1").asDouble(), 1e-9);
            assertEquals(rs.getDouble(6), sbp.get("q3").asDouble(), 1e-9);
        }
        assertEquals(count("SELECT COUNT(*) FROM study_cohort_member WHERE step_id = 'p-an-c'"), out.at("/n/n").asLong());
        List<Double> withHtn = doubles("SELECT v.num_value FROM study_variable_value v JOIN study_variable_value g ON"
                + " g.step_id = v.step_id AND g.person_id = v.person_id AND g.name = 'htn' WHERE v.step_id = 'p-an-v'"
                + " AND v.name = 'sbp_max' AND v.num_value IS NOT NULL AND g.num_value = 1");
        List<Double> without = doubles("SELECT v.num_value FROM study_variable_value v JOIN study_variable_value g ON"
                + " g.step_id = v.step_id AND g.person_id = v.person_id AND g.name = 'htn' WHERE v.step_id = 'p-an-v'"
                + " AND v.name = 'sbp_max' AND v.num_value IS NOT NULL AND g.num_value = 0");
        double[] a = without.stream().mapToDouble(Double::doubleValue).toArray();
        double[] b = withHtn.stream().mapToDouble(Double::doubleValue).toArray();
        JsonNode t = out.get("sbp_by_htn");
        assertEquals(new TTest().t(a, b), t.get("t").asDouble(), 1e-9, t.toString());
        assertEquals(new TTest().tTest(a, b), t.get("p").asDouble(), 1e-9);
        assertTrue(t.get("meanDifference").asDouble() < 0, "hypertensive patients have higher blood pressure: " + t);
        long[][] table = new long[2][2];
        String[] sexes = { "female", "male" };
        for (int i = 0; i < 2; i++) {
            for (int j = 0; j < 2; j++) {
                table[i][j] = count("SELECT COUNT(*) FROM study_variable_value v JOIN study_variable_value g ON g.step_id = v.step_id"
                        + " AND g.person_id = v.person_id AND g.name = 'sex' WHERE v.step_id = 'p-an-v' AND v.name = 'htn'"
                        + " AND v.num_value = " + i + " AND g.text_value = '" + sexes[j] + "'");
            }
        }
        JsonNode chi = out.get("htn_by_sex");
        assertEquals(table[1][0], chi.at("/table/1/female").asLong(), chi.toString());
        assertEquals(new ChiSquareTest().chiSquare(table), chi.get("chiSquare").asDouble(), 1e-9);
        assertEquals(new ChiSquareTest().chiSquareTest(table), chi.get("p").asDouble(), 1e-9);
    }

    @Test
    void smallCellsLeaveTheNodeAsLessThanFiveAndOutOfDerivedFigures() throws Exception {
        // a month of index dates holding 1 to 4 diabetics: found from the generator's histories
        LocalDate month = null;
        for (LocalDate m = LocalDate.of(2016, 1, 1); m.isBefore(LocalDate.of(2025, 12, 1)) && month == null; m = m.plusMonths(1)) {
            long from = m.toEpochDay(), to = m.plusMonths(1).minusDays(1).toEpochDay();
            int n = 0;
            for (int id = 1; id <= PERSONS_A; id++) {
                var p = SyntheticCdm.person(SEED_A, id);
                long first = p.conditions().stream().filter(c -> c[0] == SyntheticCdm.TYPE2_DIABETES || c[0] == SyntheticCdm.TYPE1_DIABETES)
                        .mapToLong(c -> c[1]).min().orElse(-1);
                if (first >= from && first <= to && first >= p.obsStart()) {
                    n++;
                }
            }
            if (n >= 1 && n <= 4) {
                month = m;
            }
        }
        assertTrue(month != null, "no month with 1 to 4 first diagnoses in the synthetic data");
        String cohort = "{\"version\":1,\"entry\":{\"domain\":\"condition\",\"conceptSet\":{\"concepts\":[201820]}},"
                + "\"indexDateRange\":{\"from\":\"" + month + "\",\"to\":\"" + month.plusMonths(1).minusDays(1) + "\"}}";
        JsonNode c = run(nodeA, "p-small", "p-small-c", "cohort", cohort, Map.of(), "aggregate-only");
        assertEquals("<5", c.get("persons").asText(), c.toString());
        run(nodeA, "p-small", "p-small-v", "variables", VARIABLES, Map.of("cohort", "p-small-c"), "aggregate-only");
        JsonNode a = run(nodeA, "p-small", "p-small-a", "analysis", ANALYSIS,
                Map.of("cohort", "p-small-c", "variables", "p-small-v"), "aggregate-only").get("analyses");
        assertEquals("<5", a.at("/n/n").asText());
        assertEquals("<5", a.at("/age/n").asText());
        assertFalse(a.get("age").has("mean"), "no mean of a suppressed cell: " + a.get("age"));
        assertFalse(a.get("age").has("histogram"));
        assertEquals("<5", a.at("/sex/n").asText());
        assertFalse(a.get("sbp_by_htn").has("p"), a.get("sbp_by_htn").toString());
        assertFalse(a.get("htn_by_sex").has("p"), a.get("htn_by_sex").toString());
        // in a large cohort, a rare category alone is suppressed and gets no proportion
        JsonNode big = study(nodeA, "p-cat");
        big.get("analyses").get("sex").get("categories").forEach(cat -> {
            if (cat.get("count").isTextual()) {
                assertFalse(cat.has("proportion"));
            }
        });
    }

    @Test
    void cleanAndReExecuteGiveTheSameResultWithoutLeftovers() throws Exception {
        JsonNode first = study(nodeA, "p-re");
        long members = count("SELECT COUNT(*) FROM study_cohort_member WHERE project_id = 'p-re'");
        long values = count("SELECT COUNT(*) FROM study_variable_value WHERE project_id = 'p-re'");
        for (String step : List.of("p-re-a", "p-re-v", "p-re-c")) {
            nodeA.clean("p-re", step);
        }
        assertEquals(0, count("SELECT COUNT(*) FROM study_cohort_member WHERE project_id = 'p-re'")
                + count("SELECT COUNT(*) FROM study_variable_value WHERE project_id = 'p-re'")
                + count("SELECT COUNT(*) FROM study_step_output WHERE project_id = 'p-re'"));
        JsonNode again = study(nodeA, "p-re");
        assertEquals(first, again);
        // executing a step again without clean (a retry after a crash mid-step) replaces, never doubles
        run(nodeA, "p-re", "p-re-c", "cohort", DIABETES_COHORT, Map.of(), "aggregate-only");
        run(nodeA, "p-re", "p-re-v", "variables", VARIABLES, Map.of("cohort", "p-re-c"), "aggregate-only");
        assertEquals(members, count("SELECT COUNT(*) FROM study_cohort_member WHERE project_id = 'p-re'"));
        assertEquals(values, count("SELECT COUNT(*) FROM study_variable_value WHERE project_id = 'p-re'"));
    }

    @Test
    void pooledResultsOfTwoNodesEqualTheUnionOfTheirData() throws Exception {
        JsonNode a = study(nodeA, "p-pool-a");
        JsonNode b = study(nodeB, "p-pool-b");
        JsonNode u = study(union, "p-pool-u").get("analyses");
        JsonNode pooled = ResultPooling.pool(Map.of("node-a", a, "node-b", b)).get("pooled").get("analyses");
        assertEquals(u.at("/n/n").asLong(), pooled.at("/n/n").asLong());
        for (String numeric : List.of("age", "sbp")) {
            for (String f : List.of("n", "sum", "sumSquares", "mean", "sd", "median", "q1", "q3")) {
                assertEquals(u.get(numeric).get(f), pooled.get(numeric).get(f), numeric + "." + f);
            }
        }
        assertEquals(u.at("/sex/categories"), pooled.at("/sex/categories"));
        for (String f : List.of("t", "df", "p", "meanDifference")) {
            assertEquals(u.get("sbp_by_htn").get(f), pooled.get("sbp_by_htn").get(f), "tTest." + f);
        }
        for (String f : List.of("chiSquare", "df", "p")) {
            assertEquals(u.get("htn_by_sex").get(f), pooled.get("htn_by_sex").get(f), "chiSquare." + f);
        }
        assertTrue(a.at("/analyses/n/n").asLong() > 0 && b.at("/analyses/n/n").asLong() > 0);
        String csv = ResultPooling.csv(ResultPooling.pool(Map.of("node-a", a, "node-b", b)));
        assertTrue(csv.startsWith("scope,analysis,statistic,value\n"), csv);
        assertTrue(csv.contains("\npooled,age,mean," + pooled.at("/age/mean").asText() + "\n"), csv);
        assertTrue(csv.contains("\nnode-a,age,mean,"), csv);
    }

    @Test
    void rowsAreDeIdentifiedWhenTheProjectSharesRows() throws Exception {
        run(nodeA, "p-rows", "p-rows-c", "cohort", DIABETES_COHORT, Map.of(), "de-identified-rows");
        JsonNode v = run(nodeA, "p-rows", "p-rows-v", "variables", VARIABLES, Map.of("cohort", "p-rows-c"), "de-identified-rows");
        JsonNode rows = v.get("rows");
        assertEquals(count("SELECT COUNT(*) FROM study_cohort_member WHERE step_id = 'p-rows-c'"), rows.size());
        List<Integer> realIds = ids("SELECT person_id FROM study_cohort_member WHERE step_id = 'p-rows-c'");
        for (JsonNode r : rows) {
            assertTrue(r.get("pseudonym").asText().matches("[0-9a-f]{16}"), r.toString());
            assertFalse(r.has("person_id") || r.has("personId"), r.toString());
            assertTrue(r.get("age").asText().matches("\\d+-\\d+"), "age banded: " + r);
            int lo = Integer.parseInt(r.get("age").asText().split("-")[0]);
            assertEquals(0, lo % 5);
        }
        assertFalse(realIds.stream().anyMatch(id -> rows.toString().contains("\"" + id + "\"")));
        // the same person gets the same pseudonym in the same project, another in another project
        JsonNode again = run(nodeA, "p-rows", "p-rows-v", "variables", VARIABLES, Map.of("cohort", "p-rows-c"), "de-identified-rows");
        assertEquals(rows, again.get("rows"));
        run(nodeA, "p-rows2", "p-rows2-c", "cohort", DIABETES_COHORT, Map.of(), "de-identified-rows");
        JsonNode other = run(nodeA, "p-rows2", "p-rows2-v", "variables", VARIABLES, Map.of("cohort", "p-rows2-c"), "de-identified-rows");
        assertFalse(other.get("rows").get(0).get("pseudonym").equals(rows.get(0).get("pseudonym"))
                && other.get("rows").get(1).get("pseudonym").equals(rows.get(1).get("pseudonym")));
        // dates shifted within ±180 days of the real index date: the shifted dates differ from the real ones for most
        long unchanged = 0;
        List<String> real = strings("SELECT CAST(index_date AS varchar) FROM study_cohort_member WHERE step_id = 'p-rows-c'");
        for (JsonNode r : rows) {
            unchanged += real.contains(r.get("indexDate").asText()) ? 1 : 0;
        }
        assertTrue(unchanged < rows.size() / 2, "most index dates shifted");
        // aggregate-only projects never get rows
        assertFalse(run(nodeA, "p-rows3", "p-rows3-c", "cohort", DIABETES_COHORT, Map.of(), "aggregate-only").has("rows"));
    }

    long count(String sql) throws SQLException {
        try (Connection c = db.connection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    List<Integer> ids(String sql) throws SQLException {
        List<Integer> out = new ArrayList<>();
        try (Connection c = db.connection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getInt(1));
            }
        }
        return out;
    }

    List<Double> doubles(String sql) throws SQLException {
        List<Double> out = new ArrayList<>();
        try (Connection c = db.connection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getDouble(1));
            }
        }
        return out;
    }

    List<String> strings(String sql) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Connection c = db.connection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        return out;
    }
}
