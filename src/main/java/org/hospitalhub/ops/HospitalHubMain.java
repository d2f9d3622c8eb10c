package org.hospitalhub.ops;

import java.io.PrintStream;
import java.nio.file.Path;

import io.quarkus.runtime.Quarkus;

/**
 * The hub's entry point. {@code java -jar quarkus-run.jar} starts the hub as before; {@code java -jar quarkus-run.jar
 * validate DIR} checks a hospital's route files against the shared ones and exits, without starting Quarkus (no
 * database, broker or port needed), so an integrator can check YAML before deploying it. {@code cdm-init},
 * {@code cdm-generate} and {@code cdm-load} prepare a federation node's clinical schema (see CdmCommands).
 * <p>
 * Made the jar's entry point by {@code quarkus.package.main-class}, not by {@code @QuarkusMain}: Camel Quarkus does not
 * start Camel by itself when an application has a {@code @QuarkusMain}, and {@code @QuarkusTest} never calls a main.
 */
public class HospitalHubMain {

    public static void main(String... args) {
        if (args.length > 0 && "validate".equals(args[0])) {
            System.exit(validate(args, System.out, System.err));
        }
        if (args.length > 0 && args[0].startsWith("cdm-")) {
            System.exit(org.hospitalhub.federation.cdm.CdmCommands.run(args, System.getenv(), System.out, System.err));
        }
        Quarkus.run(args);
    }

    /** Runs {@code validate DIR}; returns the exit code: 0 valid, 1 problems found, 2 wrong usage. */
    static int validate(String[] args, PrintStream out, PrintStream err) {
        if (args.length != 2 || args[1].startsWith("-")) {
            err.println("usage: java -jar quarkus-run.jar validate DIR");
            err.println("  checks DIR/*" + RouteValidator.SUFFIX + " together with the hub's shared routes ("
                    + RouteValidator.CORE_FOLDER + ") and exits 0 when they are valid, 1 otherwise");
            return 2;
        }
        Path dir = Path.of(args[1]);
        RouteValidator.Report report;
        try {
            report = new RouteValidator().validateFolder(RouteValidator.coreFiles(HospitalHubMain.class.getClassLoader()),
                    dir);
        } catch (Exception e) {
            err.println("cannot validate " + dir + ": " + RouteValidator.message(e));
            return 1;
        }
        report.warnings().forEach(w -> out.println("WARNING " + w));
        report.problems().forEach(p -> out.println("ERROR   " + p));
        if (report.valid()) {
            out.printf("OK: %d files, %d routes, %d flows (%s)%n", report.files().size(), report.routes(),
                    report.flows().size(), String.join(", ", report.flows()));
            return 0;
        }
        out.printf("INVALID: %d problem%s in %s%n", report.problems().size(), report.problems().size() == 1 ? "" : "s",
                dir);
        return 1;
    }
}
