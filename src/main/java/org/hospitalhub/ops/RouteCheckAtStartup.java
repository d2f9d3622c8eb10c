package org.hospitalhub.ops;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Predicate;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.apache.camel.CamelContext;
import org.apache.camel.Component;
import org.apache.camel.quarkus.main.events.BeforeConfigure;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * Refuses to start the hub with broken route files. Runs the route validator on the shared routes and the hospital's
 * folder ({@code hub.routes.dir}) before Camel loads them, and fails startup with every problem, file and line. Camel
 * alone names the file only for YAML errors; an unknown template, a missing parameter or a duplicate route id come
 * without it, and a mistyped {@code routeConfigurationId} or a flow without a sink not at all.
 */
@ApplicationScoped
public class RouteCheckAtStartup {

    private static final Logger LOG = Logger.getLogger(RouteCheckAtStartup.class);

    private final Path routesDir;
    private final boolean enabled;

    public RouteCheckAtStartup(@ConfigProperty(name = "hub.routes.dir") String routesDir,
            @ConfigProperty(name = "hub.routes.validate-at-startup", defaultValue = "true") boolean enabled) {
        this.routesDir = Path.of(routesDir);
        this.enabled = enabled;
    }

    void beforeRoutesLoad(@Observes BeforeConfigure event) {
        if (!enabled) {
            LOG.warn("hub.routes.validate-at-startup=false: route files are not checked before they load");
            return;
        }
        CamelContext camel = event.getCamelContext();
        verify(routesDir, RouteCheckAtStartup.class.getClassLoader(),
                name -> camel.hasComponent(name) != null
                        || camel.getRegistry().lookupByNameAndType(name, Component.class) != null);
    }

    /**
     * The startup check: throws {@link InvalidRouteFilesException} naming every problem with its file and line.
     *
     * @param extraComponents component names the running hub knows besides those on the classpath
     */
    public static RouteValidator.Report verify(Path routesDir, ClassLoader loader, Predicate<String> extraComponents) {
        long t0 = System.nanoTime();
        RouteValidator validator = new RouteValidator(extraComponents);
        RouteValidator.Report report;
        try {
            List<RouteValidator.RouteFile> core = RouteValidator.coreFiles(loader);
            if (!Files.isDirectory(routesDir)) {
                // Camel would stop on it anyway, with a bare NoSuchFileException; a mistyped path must not pass for
                // "no flows" either, so say what to do
                throw new InvalidRouteFilesException("The hub does not start: the routes folder "
                        + routesDir.toAbsolutePath() + " (hub.routes.dir / HUB_ROUTES_DIR) does not exist or is not a "
                        + "folder. Point HUB_ROUTES_DIR at the hospital's route files, or at an empty folder for a hub "
                        + "without hospital flows (a relay or federation node).");
            }
            report = validator.validate(core, RouteValidator.folderFiles(routesDir));
        } catch (IOException e) {
            throw new InvalidRouteFilesException("Cannot read the route files in " + routesDir + ": " + e.getMessage());
        }
        report.warnings().forEach(w -> LOG.warn(w.toString()));
        if (!report.valid()) {
            throw new InvalidRouteFilesException("The hub does not start: " + report.problems().size()
                    + " problem(s) in the route files (hub.routes.dir=" + routesDir + "; check them with "
                    + "'java -jar quarkus-run.jar validate " + routesDir + "'):" + report.describe());
        }
        LOG.infof("Route files valid: %d files, %d routes, flows %s (checked in %d ms)", report.files().size(),
                report.routes(), report.flows(), (System.nanoTime() - t0) / 1_000_000);
        return report;
    }

    /** Route files the hub cannot run. */
    public static class InvalidRouteFilesException extends IllegalStateException {
        private static final long serialVersionUID = 1L;

        public InvalidRouteFilesException(String message) {
            super(message);
        }
    }
}
