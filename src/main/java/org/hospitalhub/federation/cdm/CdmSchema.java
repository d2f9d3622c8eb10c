package org.hospitalhub.federation.cdm;

import java.util.regex.Pattern;

import javax.sql.DataSource;

import org.flywaydb.core.Flyway;

/**
 * The node's clinical schema: OMOP CDM v5.4 tables (classpath {@code db/cdm}) in a PostgreSQL schema of its own,
 * migrated by a Flyway instance separate from the hub's (its history table lives in that schema).
 */
public final class CdmSchema {

    /** Schema names are identifiers in SQL text: only this shape is accepted. */
    private static final Pattern NAME = Pattern.compile("[a-z_][a-z0-9_]{0,62}");

    private CdmSchema() {
    }

    /** Checks a schema name from configuration or a command line; returns it. */
    public static String checkName(String schema) {
        if (schema == null || !NAME.matcher(schema).matches()) {
            throw new IllegalArgumentException("clinical schema name '" + schema
                    + "' must be 1 to 63 lower-case letters, digits and _ (starting with a letter or _)");
        }
        return schema;
    }

    /** Creates or upgrades the CDM tables in {@code schema}; returns the number of migrations applied. */
    public static int migrate(DataSource dataSource, String schema) {
        return Flyway.configure().dataSource(dataSource).schemas(checkName(schema)).createSchemas(true)
                .locations("classpath:db/cdm").table("cdm_schema_history").load().migrate().migrationsExecuted;
    }
}
