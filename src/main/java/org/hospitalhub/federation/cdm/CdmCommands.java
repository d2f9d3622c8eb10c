package org.hospitalhub.federation.cdm;

import java.io.PrintStream;
import java.nio.file.Path;
import java.sql.Connection;
import java.util.HashMap;
import java.util.Map;

import org.postgresql.ds.PGSimpleDataSource;

/**
 * The clinical-schema commands of the hub's jar, run without starting the hub:
 * <pre>
 * java -jar quarkus-run.jar cdm-init     --jdbc URL [--schema cdm]
 * java -jar quarkus-run.jar cdm-generate --jdbc URL [--schema cdm] --persons N [--seed S] [--first-person-id K]
 * java -jar quarkus-run.jar cdm-load     --jdbc URL [--schema cdm] DIR
 * </pre>
 * The database user and password come from HUB_DB_USERNAME / HUB_DB_PASSWORD (never from the command line, which
 * other users of the machine can read). Exit codes: 0 done, 1 failed (with the reason), 2 wrong usage.
 */
public final class CdmCommands {

    private CdmCommands() {
    }

    public static int run(String[] args, Map<String, String> env, PrintStream out, PrintStream err) {
        String command = args[0];
        Map<String, String> opts = new HashMap<>();
        String dir = null;
        for (int i = 1; i < args.length; i++) {
            if (args[i].startsWith("--") && i + 1 < args.length) {
                opts.put(args[i].substring(2), args[++i]);
            } else if (!args[i].startsWith("--") && dir == null) {
                dir = args[i];
            } else {
                return usage(err, "unexpected argument '" + args[i] + "'");
            }
        }
        String jdbc = opts.remove("jdbc");
        String schema = opts.getOrDefault("schema", "cdm");
        opts.remove("schema");
        if (jdbc == null || !jdbc.startsWith("jdbc:postgresql:")) {
            return usage(err, "--jdbc jdbc:postgresql://HOST:PORT/DB is required");
        }
        PGSimpleDataSource ds = new PGSimpleDataSource();
        ds.setUrl(jdbc);
        ds.setUser(env.getOrDefault("HUB_DB_USERNAME", "hub"));
        ds.setPassword(env.getOrDefault("HUB_DB_PASSWORD", ""));
        try {
            CdmSchema.checkName(schema);
            switch (command) {
                case "cdm-init" -> {
                    if (!opts.isEmpty() || dir != null) {
                        return usage(err, "cdm-init takes only --jdbc and --schema");
                    }
                    int n = CdmSchema.migrate(ds, schema);
                    out.println("OK: schema " + schema + " is at the current CDM version (" + n + " migration(s) applied)");
                }
                case "cdm-generate" -> {
                    int persons = Integer.parseInt(required(opts, "persons"));
                    long seed = Long.parseLong(opts.getOrDefault("seed", "1"));
                    int first = Integer.parseInt(opts.getOrDefault("first-person-id", "1"));
                    CdmSchema.migrate(ds, schema);
                    long t0 = System.nanoTime();
                    try (Connection c = ds.getConnection()) {
                        SyntheticCdm.Counts counts = SyntheticCdm.generate(c, schema, first, persons, seed);
                        out.printf("OK: %s in %.1f s%n", counts, (System.nanoTime() - t0) / 1e9);
                    }
                }
                case "cdm-load" -> {
                    if (dir == null) {
                        return usage(err, "cdm-load needs the folder of the CSV export");
                    }
                    CdmSchema.migrate(ds, schema);
                    try (Connection c = ds.getConnection()) {
                        out.println("OK: loaded " + CdmCsvLoader.load(c, schema, Path.of(dir)).rows());
                    }
                }
                default -> {
                    return usage(err, "unknown command " + command);
                }
            }
            return 0;
        } catch (CdmCsvLoader.InvalidExportException e) {
            err.println(e.getMessage());
            return 1;
        } catch (IllegalArgumentException e) {
            return usage(err, e.getMessage());
        } catch (Exception e) {
            err.println(command + " failed: " + e.getMessage());
            return 1;
        }
    }

    private static String required(Map<String, String> opts, String name) {
        String v = opts.get(name);
        if (v == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    private static int usage(PrintStream err, String problem) {
        err.println(problem);
        err.println("usage: java -jar quarkus-run.jar cdm-init     --jdbc URL [--schema cdm]");
        err.println("       java -jar quarkus-run.jar cdm-generate --jdbc URL [--schema cdm] --persons N [--seed S] [--first-person-id K]");
        err.println("       java -jar quarkus-run.jar cdm-load     --jdbc URL [--schema cdm] DIR");
        err.println("  database user and password: HUB_DB_USERNAME, HUB_DB_PASSWORD");
        return 2;
    }
}
