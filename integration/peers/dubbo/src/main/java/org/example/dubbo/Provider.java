package org.example.dubbo;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ProtocolConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.ServiceConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * A Dubbo provider exporting {@link EchoService} over dubbo:// with Hessian2, no registry.
 *
 * <p>{@code Provider --port P --instance NAME [--version V] [--group G]}; prints
 * {@code listening P} once the port accepts connections, then runs until killed.
 */
public final class Provider {
    private Provider() {}

    public static void main(String[] argv) throws Exception {
        Args args = new Args(argv);
        int port = Integer.parseInt(args.require("port"));
        String instance = args.require("instance");

        // The address to bind and to advertise (Dubbo's DUBBO_IP_TO_BIND, read from the
        // environment or the system properties): loopback only.
        Loopback.install();
        System.setProperty("DUBBO_IP_TO_BIND", Loopback.HOST);
        ApplicationConfig application = new ApplicationConfig("echo-provider-" + instance);
        application.setQosEnable(false);
        application.setRegisterMode("interface");

        ProtocolConfig protocol = new ProtocolConfig("dubbo", port);
        protocol.setHost(Loopback.HOST);
        protocol.setSerialization("hessian2");
        protocol.setPreferSerialization("hessian2");
        protocol.setThreads(300);

        ServiceConfig<EchoService> service = new ServiceConfig<>();
        service.setInterface(EchoService.class);
        service.setRef(new EchoServiceImpl(instance));
        String version = args.get("version", null);
        if (version != null) {
            service.setVersion(version);
        }
        String group = args.get("group", null);
        if (group != null) {
            service.setGroup(group);
        }

        ServiceConfig<InfoService> info = new ServiceConfig<>();
        info.setInterface(InfoService.class);
        info.setRef(new InfoServiceImpl(instance));
        if (version != null) {
            info.setVersion(version);
        }

        DubboBootstrap.getInstance()
                .application(application)
                .registry(new RegistryConfig(RegistryConfig.NO_AVAILABLE))
                .protocol(protocol)
                .service(service)
                .service(info)
                .start();
        System.out.println("listening " + port);
        System.out.flush();
        Thread.currentThread().join();
    }
}
