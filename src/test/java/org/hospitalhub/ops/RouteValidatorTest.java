package org.hospitalhub.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The route validator on broken hospital folders, one kind of problem each: the report must name the file, the line
 * and the problem. Plain JUnit: the validator needs no running hub.
 */
class RouteValidatorTest {

    @TempDir
    Path dir;

    private static final String SOURCE = """
            - templatedRoute:
                routeTemplateRef: outbox-source
                routeId: %1$s-source
                parameters:
                  - {name: flowId, value: %1$s}
                  - {name: types, value: his.charge.created}
            """;
    private static final String SINK = """
            - templatedRoute:
                routeTemplateRef: jdbc-sink
                routeId: %1$s-sink
                parameters:
                  - {name: flowId, value: %1$s}
                  - {name: table, value: finance_staging}
            """;

    private static final String HTTP_SINK = """
            - templatedRoute:
                routeTemplateRef: http-sink
                routeId: %1$s-sink
                parameters:
                  - {name: flowId, value: %1$s}
                  - {name: url, value: "%2$s"}
            """;

    private static String flow(String id) {
        return SOURCE.formatted(id) + SINK.formatted(id);
    }

    private RouteValidator.Report check(Map<String, String> files) throws IOException {
        for (var f : files.entrySet()) {
            Files.writeString(dir.resolve(f.getKey()), f.getValue());
        }
        return new RouteValidator().validateFolder(RouteValidator.coreFiles(getClass().getClassLoader()), dir);
    }

    private RouteValidator.Report check(String file, String text) throws IOException {
        return check(Map.of(file, text));
    }

    /** The one problem of the report, as printed: file:line: message. */
    private String onlyProblem(RouteValidator.Report report) {
        assertEquals(1, report.problems().size(), () -> "problems: " + report.problems());
        assertFalse(report.valid());
        return report.problems().get(0).toString();
    }

    private String path(String file) {
        return dir.resolve(file).toString();
    }

    @Test
    void demoAndTestHospitalsAreValid() throws IOException {
        var core = RouteValidator.coreFiles(getClass().getClassLoader());
        var demo = new RouteValidator().validateFolder(core, Path.of("examples/demo-hospital/routes"));
        assertTrue(demo.valid(), () -> demo.problems().toString());
        assertTrue(demo.flows().containsAll(List.of("demo-charges-to-finance", "demo-stock-to-materials")),
                demo.flows().toString());
        assertTrue(demo.files().contains("classpath:routes/core/templates.camel.yaml"), demo.files().toString());

        var test = new RouteValidator().validateFolder(core, Path.of("src/test/resources/routes-test"));
        assertTrue(test.valid(), () -> test.problems().toString());
        assertTrue(test.flows().containsAll(List.of("t-broken", "t-finance", "t-ledger")), test.flows().toString());
    }

    @Test
    void exampleHospitalsShippedForKubernetesAreValid() throws IOException {
        var core = RouteValidator.coreFiles(getClass().getClassLoader());
        var county = new RouteValidator().validateFolder(core, Path.of("examples/county-hospital/routes"));
        assertTrue(county.valid(), () -> county.problems().toString());
        assertTrue(county.flows().containsAll(List.of("county-charges", "county-stock", "county-vouchers")),
                county.flows().toString());
        var city = new RouteValidator().validateFolder(core, Path.of("examples/city-hospital/routes"));
        assertTrue(city.valid(), () -> city.problems().toString());
        assertTrue(city.flows().containsAll(List.of("city-charges", "city-stock", "city-vouchers")), city.flows().toString());
    }

    @Test
    void yamlSyntaxErrorNamesFileAndLine() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", """
                - route:
                    id: my-route
                    from:
                      uri: timer:x
                     steps:
                        - log: hi
                """));
        assertTrue(p.startsWith(path("a.camel.yaml") + ":5: "), p);
        assertTrue(p.contains("expected <block end>"), p);
    }

    @Test
    void kebabCaseStepNoLongerLoads() throws IOException {
        var report = check("a.camel.yaml", """
                - route:
                    id: my-route
                    from:
                      uri: timer:x
                      steps:
                        - set-body:
                            constant: x
                """);
        String p = onlyProblem(report);
        assertEquals(path("a.camel.yaml") + ":6: Unknown node id: set-body", p);
        assertTrue(report.warnings().stream().anyMatch(w -> w.toString().contains("kebab-case key 'set-body'")
                && w.line() == 6), report.warnings().toString());
    }

    @Test
    void kebabCaseKeyThatStillLoadsIsAWarning() throws IOException {
        var report = check("a.camel.yaml", flow("a").replace("routeTemplateRef: jdbc-sink",
                "route-template-ref: jdbc-sink"));
        assertTrue(report.valid(), () -> report.problems().toString());
        assertEquals(1, report.warnings().size(), report.warnings().toString());
        assertEquals(path("a.camel.yaml") + ":8: kebab-case key 'route-template-ref': write it camelCase "
                + "('routeTemplateRef'); Camel 4.13 removed kebab-case keys, the rest will follow",
                report.warnings().get(0).toString());
    }

    @Test
    void misspelledEipIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", """
                - route:
                    id: my-route
                    from:
                      uri: timer:x
                      steps:
                        - sett-body:
                            constant: x
                """));
        assertEquals(path("a.camel.yaml") + ":6: Unknown node id: sett-body", p);
    }

    @Test
    void unknownKeyIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", flow("a").replace("routeId: a-sink", "routeIdd: a-sink")));
        assertTrue(p.startsWith(path("a.camel.yaml") + ":9: Unsupported field: routeIdd"), p);
    }

    @Test
    void unknownTemplateIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", flow("a").replace("outbox-source", "outbox-sourc")));
        assertTrue(p.startsWith(path("a.camel.yaml") + ":1: templatedRoute 'a-source' of template 'outbox-sourc': no "
                + "route template 'outbox-sourc' (known: "), p);
        assertTrue(p.contains("jdbc-sink") && p.contains("outbox-source"), p);
    }

    @Test
    void missingTemplateParameterIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", flow("a").replace("      - {name: table, value: finance_staging}\n",
                "")));
        assertTrue(p.startsWith(path("a.camel.yaml") + ":7: templatedRoute 'a-sink' of template 'jdbc-sink': "), p);
        assertTrue(p.endsWith("mandatory parameters must be provided: table"), p);
    }

    @Test
    void misspeltTemplateParameterIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", flow("a").replace("      - {name: types, value: his.charge.created}\n",
                "      - {name: types, value: his.charge.created}\n      - {name: batchPerpoll, value: \"true\"}\n")));
        assertTrue(p.startsWith(path("a.camel.yaml") + ":1: templatedRoute 'a-source' of template 'outbox-source': "
                + "unknown parameter 'batchPerpoll' (known: flowId, types, "), p);
    }

    @Test
    void switchParameterMustBeTrueOrFalse() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", flow("a").replace("      - {name: types, value: his.charge.created}\n",
                "      - {name: types, value: his.charge.created}\n      - {name: batchPerPoll, value: \"yes\"}\n")));
        assertTrue(p.endsWith("templatedRoute 'a-source' of template 'outbox-source': parameter 'batchPerPoll' must be "
                + "true or false, not 'yes'"), p);
    }

    private static String kafkaFlow(String dedupe, String sink) {
        return """
                - templatedRoute:
                    routeTemplateRef: kafka-source
                    routeId: k-source
                    parameters:
                      - {name: flowId, value: k}
                      - {name: topic, value: hh.k}
                      - {name: dedupe, value: %s}
                """.formatted(dedupe) + sink;
    }

    @Test
    void sinkDedupeIsAllowedWithAJdbcSinkOnly() throws IOException {
        RouteValidator.Report jdbc = check("k.camel.yaml", kafkaFlow("sink", SINK.formatted("k")));
        assertTrue(jdbc.valid(), () -> jdbc.problems().toString());
        String http = HTTP_SINK.formatted("k", "http://127.0.0.1:1/x");
        String p = onlyProblem(check("k.camel.yaml", kafkaFlow("sink", http)));
        assertTrue(p.startsWith(path("k.camel.yaml") + ":1: flow 'k': dedupe 'sink' (route k-source) leaves duplicates "
                + "to the sink, and only a jdbc-sink drops them"), p);
        assertTrue(p.endsWith("route k-sink is a http-sink: use dedupe 'repository'"), p);
        RouteValidator.Report repository = check("k.camel.yaml", kafkaFlow("repository", http));
        assertTrue(repository.valid(), () -> repository.problems().toString());
        String word = onlyProblem(check("k.camel.yaml", kafkaFlow("sinks", SINK.formatted("k"))));
        assertTrue(word.endsWith("templatedRoute 'k-source' of template 'kafka-source': parameter 'dedupe' must be one of "
                + "[repository, sink], not 'sinks'"), word);
    }

    @Test
    void unknownRouteConfigurationIdIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", """
                - route:
                    id: my-route
                    routeConfigurationId: hub-delivry
                    from:
                      uri: timer:x
                      steps:
                        - log: hi
                """));
        assertEquals(path("a.camel.yaml") + ":1: route 'my-route': routeConfigurationId 'hub-delivry' matches no "
                + "routeConfiguration (known: hub-delivery); Camel would run the route without its error handling "
                + "(no dead letters)", p);
    }

    /** Flow b's sink is refused for its id; that b then has no sink is not reported on top. */
    @Test
    void duplicateRouteIdIsReportedWithBothPlaces() throws IOException {
        var report = check(Map.of("a.camel.yaml", flow("a"), "b.camel.yaml", """
                - route:
                    id: hub-dead-letter
                    from:
                      uri: timer:x
                      steps:
                        - log: hi
                """ + SOURCE.formatted("b") + SINK.formatted("b").replace("routeId: b-sink", "routeId: a-sink")));
        assertEquals(List.of(
                path("b.camel.yaml") + ":1: duplicate route id 'hub-dead-letter': already used at "
                        + "classpath:routes/core/error-handling.camel.yaml:23 (Camel refuses duplicate route ids at startup)",
                path("b.camel.yaml") + ":13: duplicate route id 'a-sink': already used at " + path("a.camel.yaml")
                        + ":7 (Camel refuses duplicate route ids at startup)"),
                report.problems().stream().map(Object::toString).toList());
    }

    @Test
    void flowIdUsedByTwoSourcesInTwoFilesIsReported() throws IOException {
        Map<String, String> files = new LinkedHashMap<>();
        files.put("a.camel.yaml", flow("a"));
        files.put("b.camel.yaml", """
                - templatedRoute:
                    routeTemplateRef: kafka-source
                    routeId: b-source
                    parameters:
                      - {name: flowId, value: a}
                      - {name: topic, value: charges}
                """);
        String p = onlyProblem(check(files));
        assertEquals(path("b.camel.yaml") + ":1: flowId 'a' is used by two sources: route b-source and route a-source at "
                + path("a.camel.yaml") + ":1; every source needs its own flowId", p);
    }

    @Test
    void flowWithTwoSinksIsReported() throws IOException {
        String p = onlyProblem(check("a.camel.yaml", flow("a") + SINK.formatted("a").replace("a-sink", "a-sink-2")));
        assertEquals(path("a.camel.yaml") + ":13: flow 'a' has two sinks (routes a-sink, a-sink-2); a flowId has "
                + "exactly one sink", p);
    }

    @Test
    void sourceWithoutSinkAndSinkWithoutSourceAreReported() throws IOException {
        var report = check("a.camel.yaml", SOURCE.formatted("a") + SINK.formatted("b"));
        assertEquals(List.of(
                path("a.camel.yaml") + ":1: flow 'a' has a source (route a-source) but no sink: add a templatedRoute of "
                        + "a sink template (jdbc-sink, http-sink...) with flowId a",
                path("a.camel.yaml") + ":7: flow 'b' has a sink (route b-sink) but no source: add a templatedRoute of "
                        + "a source template (outbox-source, kafka-source...) with flowId b"),
                report.problems().stream().map(Object::toString).toList());
    }

    @Test
    void unknownComponentSchemeIsReported() throws IOException {
        var report = check("a.camel.yaml", """
                - route:
                    id: my-route
                    from:
                      uri: timer:x
                      steps:
                        - to: rabbitmqq:foo
                """ + SOURCE.formatted("h") + HTTP_SINK.formatted("h", "htp://finance.example/batch"));
        assertEquals(List.of(
                path("a.camel.yaml") + ":6: route 'my-route': endpoint 'rabbitmqq:foo' has an unknown component "
                        + "'rabbitmqq' (not a Camel component of this hub)",
                path("a.camel.yaml") + ":13: route 'h-sink' (from template 'http-sink'): endpoint "
                        + "'htp://finance.example/batch?throwExceptionOnFailure=true' has an unknown component 'htp' "
                        + "(not a Camel component of this hub)"),
                report.problems().stream().map(Object::toString).toList());
    }

    @Test
    void fileNotNamedCamelYamlIsAWarning() throws IOException {
        var report = check(Map.of("a.camel.yaml", flow("a"), "b.yaml", flow("b")));
        assertTrue(report.valid(), () -> report.problems().toString());
        assertEquals(List.of(path("b.yaml") + ": not loaded by the hub: route file names must end with .camel.yaml"),
                report.warnings().stream().map(Object::toString).toList());
        assertEquals(List.of("a"), report.flows());
    }
}
