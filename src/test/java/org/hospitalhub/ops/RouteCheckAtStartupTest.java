package org.hospitalhub.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the hub does with a broken routes folder at startup, and the {@code validate} command. Starting the hub for
 * real on a broken folder takes a packaged jar and ~10 s per case; instead these tests call the very method the
 * startup observer ({@link RouteCheckAtStartup#beforeRoutesLoad}, on Camel's BeforeConfigure event) calls, and the
 * command's own method. The other @QuarkusTest classes start the hub through that observer on valid folders.
 */
class RouteCheckAtStartupTest {

    @TempDir
    Path dir;

    private static final String BROKEN = """
            - templatedRoute:
                routeTemplateRef: outbox-source
                routeId: county-charges-source
                parameters:
                  - {name: flowId, value: county-charges}
                  - {name: types, value: his.charge.created}
            - templatedRoute:
                routeTemplateRef: jdbc-sink
                routeId: county-charges-sink
                parameters:
                  - {name: flowId, value: county-charges}
            """;

    @Test
    void brokenFolderStopsStartupNamingFileLineAndProblem() throws IOException {
        Files.writeString(dir.resolve("county.camel.yaml"), BROKEN);
        var e = assertThrows(RouteCheckAtStartup.InvalidRouteFilesException.class,
                () -> RouteCheckAtStartup.verify(dir, getClass().getClassLoader(), name -> false));
        String file = dir.resolve("county.camel.yaml").toString();
        assertTrue(e.getMessage().startsWith("The hub does not start: 1 problem(s) in the route files (hub.routes.dir="
                + dir + "; check them with 'java -jar quarkus-run.jar validate " + dir + "'):"), e.getMessage());
        assertTrue(e.getMessage().contains("\n  " + file + ":7: templatedRoute 'county-charges-sink' of template "
                + "'jdbc-sink': Route template jdbc-sink the following mandatory parameters must be provided: table"),
                e.getMessage());
    }

    @Test
    void missingFolderStopsStartupSayingWhatToSet() {
        Path missing = dir.resolve("no-such-folder");
        var e = assertThrows(RouteCheckAtStartup.InvalidRouteFilesException.class,
                () -> RouteCheckAtStartup.verify(missing, getClass().getClassLoader(), name -> false));
        assertEquals("The hub does not start: the routes folder " + missing.toAbsolutePath() + " (hub.routes.dir / "
                + "HUB_ROUTES_DIR) does not exist or is not a folder. Point HUB_ROUTES_DIR at the hospital's route files, "
                + "or at an empty folder for a hub without hospital flows (a relay or federation node).", e.getMessage());
    }

    @Test
    void emptyFolderRunsTheCoreRoutesOnly() throws IOException {
        Path empty = Files.createDirectories(dir.resolve("empty"));
        var report = RouteCheckAtStartup.verify(empty, getClass().getClassLoader(), name -> false);
        assertTrue(report.valid(), report.describe());
        assertTrue(report.flows().isEmpty(), report.flows().toString());
    }

    @Test
    void validFolderPasses() {
        var report = RouteCheckAtStartup.verify(Path.of("examples/demo-hospital/routes"), getClass().getClassLoader(),
                name -> false);
        assertTrue(report.valid());
        assertTrue(report.flows().containsAll(List.of("demo-charges-to-finance", "demo-stock-to-materials")),
                report.flows().toString());
    }

    @Test
    void componentTheRunningHubKnowsAsABeanIsAccepted() throws IOException {
        Files.writeString(dir.resolve("a.camel.yaml"), """
                - route:
                    id: to-hospital-mq
                    from:
                      uri: timer:x
                      steps:
                        - to: hospitalMq:charges
                """);
        assertThrows(RouteCheckAtStartup.InvalidRouteFilesException.class,
                () -> RouteCheckAtStartup.verify(dir, getClass().getClassLoader(), name -> false));
        var report = RouteCheckAtStartup.verify(dir, getClass().getClassLoader(), "hospitalMq"::equals);
        assertTrue(report.valid());
    }

    private record Run(int code, String out, String err) {
    }

    private static Run validate(String... args) {
        var out = new ByteArrayOutputStream();
        var err = new ByteArrayOutputStream();
        int code = HospitalHubMain.validate(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void validateCommandExitsZeroOnAValidFolder() {
        Run r = validate("validate", "examples/demo-hospital/routes");
        assertEquals(0, r.code(), r.out() + r.err());
        assertTrue(r.out().matches("OK: \\d+ files, \\d+ routes, \\d+ flows \\(.*demo-charges-to-finance.*\\)\n"), r.out());
    }

    @Test
    void validateCommandExitsOneAndPrintsEachProblem() throws IOException {
        Files.writeString(dir.resolve("county.camel.yaml"), BROKEN.replace("outbox-source", "outbox-sourc"));
        Run r = validate("validate", dir.toString());
        assertEquals(1, r.code(), r.out() + r.err());
        String file = dir.resolve("county.camel.yaml").toString();
        List<String> lines = r.out().lines().toList();
        assertEquals(3, lines.size(), r.out());
        assertTrue(lines.get(0).startsWith("ERROR   " + file + ":1: templatedRoute 'county-charges-source' of template "
                + "'outbox-sourc': no route template 'outbox-sourc' (known: "), lines.get(0));
        assertEquals("ERROR   " + file + ":7: templatedRoute 'county-charges-sink' of template 'jdbc-sink': Route "
                + "template jdbc-sink the following mandatory parameters must be provided: table", lines.get(1));
        assertEquals("INVALID: 2 problems in " + dir, lines.get(2));
    }

    @Test
    void validateCommandNeedsAFolder() {
        Run usage = validate("validate");
        assertEquals(2, usage.code());
        assertTrue(usage.err().startsWith("usage: java -jar quarkus-run.jar validate DIR"), usage.err());
        Run missing = validate("validate", dir.resolve("nowhere").toString());
        assertEquals(1, missing.code());
        assertTrue(missing.out().startsWith("ERROR   " + dir.resolve("nowhere") + ": is not a folder\n"), missing.out());
    }
}
