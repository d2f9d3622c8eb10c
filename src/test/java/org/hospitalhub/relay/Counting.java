package org.hospitalhub.relay;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.sql.Connection;
import java.util.function.Consumer;

import javax.sql.DataSource;

/** A data source that tells what a node asks of its database: each connection taken, each statement prepared (its SQL). */
final class Counting {

    private Counting() {
    }

    static DataSource dataSource(DataSource ds, Runnable onConnection, Consumer<String> onStatement) {
        return (DataSource) Proxy.newProxyInstance(DataSource.class.getClassLoader(), new Class<?>[] {DataSource.class},
                (proxy, method, args) -> {
                    Object result = invoke(ds, method, args);
                    if (!(result instanceof Connection c)) {
                        return result;
                    }
                    onConnection.run();
                    return Proxy.newProxyInstance(Connection.class.getClassLoader(), new Class<?>[] {Connection.class},
                            (p, m, a) -> {
                                if (m.getName().equals("prepareStatement") && a != null && a[0] instanceof String sql) {
                                    onStatement.accept(sql);
                                }
                                return invoke(c, m, a);
                            });
                });
    }

    private static Object invoke(Object target, Method m, Object[] args) throws Throwable {
        try {
            return m.invoke(target, args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }
}
