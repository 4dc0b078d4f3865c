package Bench::Servers;

# The three servers of the benchmark, on 127.0.0.1, all on one store:
#
#   A  nginx + ngx_http_registry_module   (HTTP, and HTTPS with HTTP/2)
#   B  the same nginx binary, no module, serving the store's blob files
#      as static files under /static/ (HTTP, and HTTPS with HTTP/2)
#   C  docker-registry serve (CNCF distribution 2.8.2)
#
# A and B get the same worker count and the same sendfile,
# open_file_cache and body settings; only `registry on` differs.
#
#   my $s = Bench::Servers::start_all(dir => $d, store => $root, ...);
#   $s->{A}{url}, $s->{A}{tls_url}, $s->{A}{pid}
#   Bench::Servers::stop_all($s);
#
# start_all(..., only => ['A', 'C']) starts just those, with the same
# configurations (the servers of the second store); admin => 1 adds to A
# the admin location of the maintenance jobs (the gc lines), where the
# built module knows `registry_admin` (admin_known).

use strict;
use warnings;

use Bench::Util qw(spew slurp spawn stop_child free_port wait_port run_cmd
                   say_step);

our $NGINX = $ENV{BENCH_NGINX} || '/usr/sbin/nginx';

# Self-signed ECDSA certificate for localhost; returns (cert, key).
sub make_cert {
    my ($dir) = @_;

    my ($crt, $key) = ("$dir/cert.pem", "$dir/key.pem");
    my ($rc, $out, $err) = run_cmd(
        ['openssl', 'req', '-x509', '-nodes', '-newkey', 'ec',
         '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-days', '2',
         '-subj', '/CN=localhost', '-keyout', $key, '-out', $crt]);
    die "openssl req failed: $err" if $rc;

    return ($crt, $key);
}

# the http{} settings A and B share
sub _common_http {
    my ($dir) = @_;
    return <<"EOF";
    access_log off;
    client_body_temp_path $dir/temp/client_body;
    proxy_temp_path $dir/temp/proxy;
    fastcgi_temp_path $dir/temp/fastcgi;
    uwsgi_temp_path $dir/temp/uwsgi;
    scgi_temp_path $dir/temp/scgi;

    sendfile on;
    tcp_nopush on;
    open_file_cache max=10000 inactive=60s;
    client_max_body_size 0;
    client_body_buffer_size 1m;
EOF
}

sub nginx_conf {
    my (%o) = @_;

    my $d = $o{dir};
    my $load = $o{module} ? "load_module $o{module};\n" : '';
    my $user = $> == 0 ? "user root;\n" : '';
    my $http = _common_http($d);

    return <<"EOF";
${load}${user}worker_processes $o{workers};
worker_rlimit_nofile $o{nofile};
pid $d/nginx.pid;
error_log $d/error.log warn;

events {
    worker_connections 4096;
}

http {
$http
    server {
        listen 127.0.0.1:$o{port};
        listen 127.0.0.1:$o{tls_port} ssl http2;
        server_name localhost;

        ssl_certificate $o{cert};
        ssl_certificate_key $o{key};

$o{locations}
    }
}
EOF
}

sub registry_locations {
    my ($store, $extra) = @_;
    $extra = $extra ? "            $extra\n" : '';
    return <<"EOF";
        location /v2/ {
            registry on;
            registry_root $store;
            registry_delete on;
$extra        }
EOF
}

# The module's directives of conf-examples/local.conf that matter for
# speed, where the built module knows them: a finished upload's fsync()
# in a thread pool.
sub registry_extra {
    my ($module) = @_;
    return index(slurp($module), 'registry_thread_pool') >= 0
        ? 'registry_thread_pool default;' : '';
}

# the admin location, on the same store: POST /_registry/gc, GET
# /_registry/jobs/<id>
sub admin_locations {
    my ($store, $extra) = @_;
    $extra = $extra ? "            $extra\n" : '';
    return <<"EOF";
        location /_registry/ {
            registry_admin on;
            registry_root $store;
$extra        }
EOF
}

sub admin_known {
    my ($module) = @_;
    return index(slurp($module), 'registry_admin') >= 0;
}

sub static_locations {
    my ($store) = @_;
    return <<"EOF";
        location /static/ {
            alias $store/docker/registry/v2/blobs/;
        }
EOF
}

# what the workers may raise their open files limit to: the hard limit,
# at most 16384 (open_file_cache max=10000 keeps that many descriptors)
sub nofile_limit {
    my ($rc, $out) = run_cmd(['sh', '-c', 'ulimit -Hn'], timeout => 10);
    chomp $out;
    return 16384 if $out eq 'unlimited' || $out !~ /^\d+$/;
    return $out < 16384 ? $out : 16384;
}

sub start_nginx {
    my (%o) = @_;

    my $d = $o{dir};
    mkdir $d;
    mkdir "$d/temp";

    $o{port} = free_port();
    $o{tls_port} = free_port();
    spew("$d/nginx.conf", nginx_conf(%o));

    my $pid = spawn([$NGINX, '-p', "$d/", '-c', "$d/nginx.conf",
                     '-e', "$d/error.log", '-g', 'daemon off;'],
                    stdout => "$d/stdout.log", stderr => "$d/stdout.log");

    wait_port($o{port}, $pid) && wait_port($o{tls_port}, $pid)
        or die "nginx ($o{name}) did not start:\n"
               . slurp("$d/stdout.log") . slurp("$d/error.log");

    return { name => $o{name}, pid => $pid, dir => $d, kind => 'nginx',
             extra => $o{extra} // '', admin => $o{admin},
             url => "http://127.0.0.1:$o{port}",
             tls_url => "https://127.0.0.1:$o{tls_port}",
             log => "$d/error.log" };
}

sub distribution_conf {
    my ($store, $port) = @_;

    # registry:2's stock config keeps blob descriptors in memory; no redis
    return <<"EOF";
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $store
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: ngx-registry-bench
EOF
}

sub start_distribution {
    my (%o) = @_;

    my $d = $o{dir};
    mkdir $d;

    my $port = free_port();
    spew("$d/config.yml", distribution_conf($o{store}, $port));

    my $pid = spawn(['docker-registry', 'serve', "$d/config.yml"],
                    stdout => "$d/distribution.log",
                    stderr => "$d/distribution.log");

    wait_port($port, $pid, 20)
        or die "docker-registry did not start:\n"
               . slurp("$d/distribution.log");

    return { name => 'C', pid => $pid, dir => $d, kind => 'distribution',
             url => "http://127.0.0.1:$port", log => "$d/distribution.log" };
}

# starts A, B and C (or those of $o{only}); %o: dir, store, module,
# workers, cert, key
sub start_all {
    my (%o) = @_;

    my %s;
    my %want = map { $_ => 1 } @{ $o{only} || [qw(A B C)] };
    my %tls = (cert => $o{cert}, key => $o{key}, workers => $o{workers},
               nofile => nofile_limit());

    my $extra = registry_extra($o{module});
    my $admin = $o{admin} && admin_known($o{module})
                ? admin_locations($o{store}, $extra) : '';
    $s{A} = start_nginx(%tls, name => 'A', dir => "$o{dir}/A",
                        module => $o{module}, extra => $extra,
                        admin => $admin ? 1 : 0,
                        locations => registry_locations($o{store}, $extra)
                                     . $admin)
        if $want{A};
    $s{B} = start_nginx(%tls, name => 'B', dir => "$o{dir}/B",
                        locations => static_locations($o{store}))
        if $want{B};
    $s{C} = start_distribution(dir => "$o{dir}/C", store => $o{store})
        if $want{C};

    say_step("servers on $o{store}: " . join(', ', map {
        "$_ $s{$_}{url}" . ($s{$_}{tls_url} ? " ($s{$_}{tls_url})" : '')
    } grep { $s{$_} } qw(A B C)));

    return \%s;
}

# TERM (nginx: fast shutdown), KILL after 10 s; nginx workers that outlive
# their master are killed too
sub stop_all {
    my ($s) = @_;

    for my $name (qw(C B A)) {
        my $srv = $s->{$name} or next;
        my $pid = delete $srv->{pid} or next;
        my @workers = $srv->{kind} eq 'nginx' ? worker_pids($pid) : ();

        stop_child($pid, 'TERM', 10);
        kill 'KILL', grep { kill 0, $_ } @workers;
    }
}

# the worker pids of an nginx master (its children, from /proc)
sub worker_pids {
    my ($master) = @_;

    my @pids;
    opendir(my $dh, '/proc') or return ();

    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$p/stat");
        push @pids, $p + 0 if $stat =~ /^\d+ \(.*\) \S+ (\d+)/s && $1 == $master;
    }

    closedir $dh;
    return sort { $a <=> $b } @pids;
}

# the lines of a server's log that mean trouble
sub log_problems {
    my ($srv) = @_;

    my @lines = split /\n/, slurp($srv->{log});

    return grep { /\[(?:error|alert|emerg|crit)\]|exited on signal/ } @lines
        if $srv->{kind} eq 'nginx';

    # a client that went away (wrk stops mid-response) is not a problem
    return grep { /level=(?:error|fatal|panic)|panic:/
                  && !/broken pipe|connection reset by peer/ } @lines;
}

1;
