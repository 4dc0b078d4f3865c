#!/usr/bin/perl

# Real clients against the authentication examples of conf-examples/,
# rendered with test paths (t/lib/ConfExample.pm); keys and certificates
# made here with the openssl CLI, htpasswd files with bcrypt.
#
# basic-auth.conf (plain HTTP on 127.0.0.1):
# - the Docker engine (t/lib/DockerEngine.pm): `docker login` with a wrong
#   password fails and stores nothing; with the right one it succeeds,
#   `docker push` (the store holds the manifest it reports, pushed as that
#   user), `docker pull` back into an emptied engine (same image id),
#   `docker logout`; a user who may only pull is refused (`denied`) and
#   nothing reaches the store; without login, docker pulls public/**
#   from the example's server that never challenges, while the main one
#   gets no request from it ("no basic auth credentials": why that server
#   is there);
# - skopeo --dest-creds / --src-creds: push, pull back byte for byte, a
#   refused push (nothing tagged); an anonymous pull of public/**;
# - podman login (a wrong password refused), pull, push, pull back into an
#   empty storage (same image id), logout.
# tls-http2.conf, curl --http2 over TLS checked against the test CA: the
# negotiated protocol is h2; 401 with the JSON body and the challenge for
# no or wrong credentials; an authorized push and pull, byte for byte; a
# refused push, 403 DENIED in JSON; skopeo pushes with credentials,
# verifying the server against the CA.
# mtls.conf: no certificate, or one of another CA: 400 with a JSON
# UNAUTHORIZED (converted by the module); a certificate of the CA names
# the user: alice pushes and pulls team-a/**, bob is denied (403) both; a
# subject outside the mapped OU is anonymous (401); skopeo with a cert dir.
# auth-request.conf, with a stand-in identity service in the same nginx:
# the user it names (for a Bearer token, so no $remote_user exists) is the
# one the rules and the access log see; its 401 becomes a JSON
# UNAUTHORIZED with its challenge; anonymous pulls of public/**; docker
# login and push, skopeo push.

use strict;
use warnings;

use Test::More;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Time::HiRes ();

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo slurp spew free_port start_nginx
                stop_nginx dir_image);
use RegContainers qw(log_since upload_sessions);
use DockerEngine qw(need_dockerd write_oci_image);
use ConfExample qw(render_example make_ca make_cert htpasswd identity_stub
                   basic curl_answer);

need_tools(qw(skopeo podman curl openssl));
need_dockerd();
plan(skip_all => 'podman runs as root here') unless $> == 0;

my $started = Time::HiRes::time();

my $tmp = tempdir('authcl-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{REGTEST_LEAVE});

my %pw = (admin => 'pw-admin', alice => 'pw-alice', bob => 'pw-bob');
my $htpasswd = htpasswd(%pw);

# keys and certificates: one CA signs the servers' and the clients'
my $pki = "$tmp/pki";
make_ca($pki, 'ca', '/CN=auth_clients.t CA');
make_cert($pki, 'server', '/CN=registry.example.com', 'ca',
          san => 'IP:127.0.0.1,DNS:registry.example.com');
make_cert($pki, 'alice', '/O=Example/OU=registry/CN=alice', 'ca');
make_cert($pki, 'bob', '/O=Example/OU=registry/CN=bob', 'ca');
make_cert($pki, 'carol', '/O=Other/CN=carol', 'ca');
make_ca($pki, 'other-ca', '/CN=another CA');
make_cert($pki, 'mallory', '/O=Example/OU=registry/CN=alice', 'other-ca');

my %tls = ('tls/registry.example.com.crt' => slurp("$pki/server.crt"),
           'tls/registry.example.com.key' => slurp("$pki/server.key"),
           'tls/clients-ca.crt' => slurp("$pki/ca.crt"));

# skopeo's --cert-dir: the CA, and a client's certificate when named
sub cert_dir {
    my ($who) = @_;
    my $d = "$tmp/certs-" . ($who // 'none');
    make_path($d);
    spew("$d/ca.crt", slurp("$pki/ca.crt"));
    if ($who) {
        spew("$d/client.cert", slurp("$pki/$who.crt"));
        spew("$d/client.key", slurp("$pki/$who.key"));
    }
    return $d;
}

# an example rendered into $tmp/$name and started; the first port waited for
sub start_example {
    my ($name, $ports, %o) = @_;

    my $p = "$tmp/$name";
    my ($text, @missing) = render_example($name, $p, ports => $ports,
                                          subst => $o{subst});
    is(join(', ', @missing), '', "$name rendered with the test's paths");

    spew("$p/etc/registry.htpasswd", $htpasswd);
    for my $f (keys %tls) {
        make_path("$p/etc/tls");
        spew("$p/etc/$f", $tls{$f});
    }
    spew("$p/nginx.conf", $text);

    my ($first) = sort { $a <=> $b } keys %$ports;
    my $n = start_nginx("$p/nginx.conf", $p, $ports->{$first});

    return { nginx => $n, dir => $p, store => "$p/store",
             access => "$p/log/registry.access.log",
             error => "$p/log/error.log" };
}

sub stop_example {
    my ($x, $name) = @_;
    stop_nginx($x->{nginx});
    my @bad = grep { /\[(?:alert|emerg|crit)\]|exited on signal/ }
              split /\n/, RegTest::slurp($x->{error});
    is(join("\n", @bad), '', "$name: no alerts in error.log");
}

sub v2 { "$_[0]{store}/docker/registry/v2" }

sub tags_of {
    my ($x, $repo) = @_;
    my $d = v2($x) . "/repositories/$repo/_manifests/tags";
    opendir(my $dh, $d) or return [];
    my @t = sort grep { !/^\./ } readdir $dh;
    return \@t;
}

sub blob_files {
    my ($x) = @_;
    my @f = glob(v2($x) . '/blobs/sha256/*/*/data');
    return scalar @f;
}

# an image of two small layers, as an OCI layout (docker loads it, skopeo
# and podman copy it)
my $img = write_oci_image("$tmp/layout", 'v1',
    layers => [[['etc/'], ['etc/hello.txt', "hello from auth_clients.t\n"]],
               [['opt/'], ['opt/data.bin', join('', map { chr } 0 .. 255) x 64]]],
    cmd => ['/bin/cat', '/etc/hello.txt']);

###############################################################################
# basic-auth.conf

my %bp = (5000 => free_port(), 5001 => free_port());
my $basic = start_example('basic-auth.conf', \%bp);
my $reg = "127.0.0.1:$bp{5000}";
my $mirror = "127.0.0.1:$bp{5001}";

my $e = DockerEngine->new;

{
    my ($rc, $out) = $e->load_oci("$tmp/layout", 'v1', 'regtest/auth:v1');
    is($rc, 0, 'the image is loaded into dockerd') or diag($out);
    is($e->inspect('regtest/auth:v1')->{Id}, $img->{config_digest},
       'loaded: image id = config digest');
}

# docker login: a wrong password, then the right one

{
    my ($rc, $out, $err) = $e->login($reg, 'alice', 'wrong');
    isnt($rc, 0, 'docker login with a wrong password fails');
    like($err, qr/401 Unauthorized/, '... the registry said 401');
    ok(!exists $e->config->{auths}{$reg}, '... and nothing was stored');

    ($rc, $out, $err) = $e->login($reg, 'alice', $pw{alice});
    is($rc, 0, 'docker login alice') or diag("$out$err");
    like($out, qr/Login Succeeded/, '... Login Succeeded');
    ok($e->config->{auths}{$reg}{auth}, '... credentials stored');
}

# push, pull back, logout

my $pushed;

{
    $e->docker_ok('docker tag', 'tag', 'regtest/auth:v1', "$reg/alice/app:v1");
    my $offset = -s $basic->{access} // 0;

    my $out = $e->docker_ok('docker push alice/app:v1 as alice', 'push',
                            "$reg/alice/app:v1");
    ($pushed) = $out =~ /: digest: (sha256:[0-9a-f]{64}) /;
    like($pushed // '', qr/^sha256:/, "docker push reports a digest");
    is(RegTest::slurp(v2($basic) . '/repositories/alice/app/_manifests/tags/v1/current/link'),
       $pushed // 'none', 'the store: tag v1 names that manifest');
    like(log_since($basic->{access}, $offset),
         qr{^127\.0\.0\.1 - alice \[[^]]+\] "PUT /v2/alice/app/manifests/v1 HTTP/1\.1" 201 }m,
         'access log: alice put the manifest');

    ok($e->remove_all, 'docker rmi: no image left');
    $out = $e->docker_ok('docker pull alice/app:v1 as alice', 'pull',
                         "$reg/alice/app:v1");
    like($out, qr/^Digest: \Q$pushed\E$/m, '... the pushed digest');
    is($e->inspect("$reg/alice/app:v1")->{Id}, $img->{config_digest},
       '... the same image id');

    my ($rc, $o, $err) = $e->logout($reg);
    is($rc, 0, 'docker logout') or diag("$o$err");
    ok(!exists $e->config->{auths}{$reg}, '... credentials removed');
}

# bob may pull everything but push only into bob/**

{
    my ($rc, $out, $err) = $e->login($reg, 'bob', $pw{bob});
    is($rc, 0, 'docker login bob') or diag("$out$err");

    $e->docker_ok('bob pulls alice/app', 'pull', "$reg/alice/app:v1");
    $e->docker_ok('docker tag', 'tag', "$reg/alice/app:v1",
                  "$reg/public/bob:v1");

    my $blobs = blob_files($basic);
    ($rc, $out, $err) = $e->docker('push', "$reg/public/bob:v1");
    isnt($rc, 0, 'docker push public/bob:v1 as bob fails');
    like($err, qr/denied: requested access to the resource is denied/,
         '... docker says denied') or diag("$out$err");
    ok(!-e v2($basic) . '/repositories/public/bob',
       '... no repository public/bob in the store');
    is(blob_files($basic), $blobs, '... no blob added');
    is(join(' ', upload_sessions($basic->{store})), '',
       '... no upload session');

    $e->logout($reg);
}

# admin pushes public/hello; docker pulls it without login from the
# server that never challenges; the main one gets no request from docker

{
    my ($rc, $out, $err) = $e->login($reg, 'admin', $pw{admin});
    is($rc, 0, 'docker login admin') or diag("$out$err");
    $e->docker_ok('docker tag', 'tag', "$reg/alice/app:v1",
                  "$reg/public/hello:v1");
    $e->docker_ok('docker push public/hello:v1 as admin', 'push',
                  "$reg/public/hello:v1");
    $e->logout($reg);
    is_deeply($e->config->{auths} // {}, {}, 'no credentials left in docker');

    ok($e->remove_all, 'docker rmi: no image left');

    my $out2 = $e->docker_ok('anonymous docker pull of public/hello:v1 (port 5001)',
                             'pull', "$mirror/public/hello:v1");
    like($out2, qr/Pull complete/, '... layers fetched');
    is($e->inspect("$mirror/public/hello:v1")->{Id}, $img->{config_digest},
       '... the same image id');

    my $offset = -s $basic->{access};
    ($rc, $out, $err) = $e->docker('pull', "$reg/public/hello:v1");
    isnt($rc, 0, 'anonymous docker pull from the challenging server fails');
    like($err, qr/no basic auth credentials/,
         '... "no basic auth credentials": docker sent nothing');
    unlike(log_since($basic->{access}, $offset), qr{/v2/public/hello/},
           '... no request for the image reached it');
}

# skopeo with --creds

my $layout = "oci:$tmp/layout:v1";

{
    my ($rc, $out) = skopeo('copy', '--dest-tls-verify=false', '--dest-creds',
                            "alice:$pw{alice}", $layout,
                            "docker://$reg/alice/skopeo:v1");
    is($rc, 0, 'skopeo push as alice') or diag($out);
    is_deeply(tags_of($basic, 'alice/skopeo'), ['v1'], '... tagged v1');

    ($rc, $out) = skopeo('copy', '--src-tls-verify=false', '--src-creds',
                         "alice:$pw{alice}", "docker://$reg/alice/skopeo:v1",
                         "dir:$tmp/sk-pulled");
    is($rc, 0, 'skopeo pull as alice') or diag($out);
    is(-f "$tmp/sk-pulled/manifest.json" ? dir_image("$tmp/sk-pulled")->{digest} : '',
       $img->{digest}, '... the same manifest, byte for byte');

    ($rc, $out) = skopeo('copy', '--dest-tls-verify=false', '--dest-creds',
                         "bob:$pw{bob}", $layout,
                         "docker://$reg/alice/skopeo:bob");
    isnt($rc, 0, 'skopeo push into alice/skopeo as bob fails');
    like($out, qr/denied: requested access to the resource is denied/,
         '... denied');
    is_deeply(tags_of($basic, 'alice/skopeo'), ['v1'], '... no tag added');

    ($rc, $out) = skopeo('copy', '--dest-tls-verify=false', '--dest-creds',
                         "bob:wrong", $layout, "docker://$reg/bob/skopeo:v1");
    isnt($rc, 0, 'skopeo push with a wrong password fails');
    ok(!-e v2($basic) . '/repositories/bob/skopeo', '... nothing stored');

    ($rc, $out) = skopeo('copy', '--src-tls-verify=false',
                         "docker://$reg/public/hello:v1", "dir:$tmp/sk-anon");
    is($rc, 0, 'skopeo anonymous pull of public/hello') or diag($out);
}

# podman login, pull, push, pull back, logout

{
    my $c = RegContainers->new("$tmp/podman");
    my $auth = "$tmp/podman-auth.json";
    my %o = (reg => $reg, auth => $auth, user => 'alice',
             opts => ['--tls-verify=false', '--authfile', $auth]);

    $c->podman_login(%o, password => $pw{alice},
                     refused => qr/invalid username\/password/);
    $c->podman_push_back(%o, from => 'alice/skopeo:v1',
                         to => 'alice/podman:v1',
                         tags_of => sub { tags_of($basic, $_[0]) },
                         config_digest => $img->{config_digest});
    $c->podman_logout(%o, from => 'alice/skopeo:v1',
                      forbidden => 'public/podman:v1',
                      public => 'public/hello:v1',
                      denied => sub {
                          like($_[0], qr/denied: requested access to the resource is denied/,
                               '... denied');
                      });
}

stop_example($basic, 'basic-auth.conf');

###############################################################################
# tls-http2.conf: curl over HTTP/2, verifying the server against the CA

# a small image pushed with curl: config, layer, manifest
sub curl_push_image {
    my ($base, $repo, @curl) = @_;

    my %blob = (config => '{"architecture":"amd64","os":"linux","rootfs":'
                          . '{"type":"layers","diff_ids":[]}}',
                layer => "layer bytes of $repo " . ('x' x 5000));
    my @status;

    for my $k (qw(config layer)) {
        spew("$tmp/$k", $blob{$k});
        my $d = RegTest::digest($blob{$k});
        my $r = curl_answer(@curl, '-X', 'POST', '--data-binary', "\@$tmp/$k",
                            "$base/v2/$repo/blobs/uploads/?digest=$d");
        push @status, $r->{status};
        $blob{"${k}_digest"} = $d;
    }

    my $m = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        . '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"'
        . $blob{config_digest} . '","size":' . length($blob{config}) . '},'
        . '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"'
        . $blob{layer_digest} . '","size":' . length($blob{layer}) . '}]}';
    spew("$tmp/manifest", $m);

    my $r = curl_answer(@curl, '-X', 'PUT', '-H',
                        'Content-Type: application/vnd.oci.image.manifest.v1+json',
                        '--data-binary', "\@$tmp/manifest",
                        "$base/v2/$repo/manifests/v1");
    push @status, $r->{status};

    return { %blob, manifest => $m, status => "@status", response => $r };
}

{
    my $port = free_port();
    my $x = start_example('tls-http2.conf', { 443 => $port });
    my $base = "https://127.0.0.1:$port";
    my @h2 = ('--http2', '--cacert', "$pki/ca.crt");
    my @alice = (@h2, '-u', "alice:$pw{alice}");

    my $r = curl_answer(@h2, "$base/v2/");
    is($r->{version}, '2', 'TLS: curl negotiated HTTP/2, the CA verified');
    is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
       'TLS: /v2/ without credentials: 401 UNAUTHORIZED in JSON');
    is($r->{headers}{'www-authenticate'}, 'Basic realm="registry"',
       '... the Basic challenge');
    is($r->{headers}{'content-type'}, 'application/json', '... JSON');
    is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
       '... the API version header');

    $r = curl_answer(@h2, '-u', 'alice:wrong', "$base/v2/alice/h2/tags/list");
    is("$r->{status} $r->{code} $r->{version}", '401 UNAUTHORIZED 2',
       "TLS: a wrong password: auth_basic's 401 in JSON");
    like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="registry"/,
         '... with its challenge');

    my $i = curl_push_image($base, 'alice/h2', @alice);
    is($i->{status}, '201 201 201', 'TLS: alice pushes alice/h2 over HTTP/2');
    is($i->{response}{version}, '2', '... over HTTP/2');

    $r = curl_answer(@alice, '-H', 'Accept: application/vnd.oci.image.manifest.v1+json',
                     "$base/v2/alice/h2/manifests/v1");
    is("$r->{status} $r->{version}", '200 2', 'TLS: alice pulls the manifest');
    is($r->{content}, $i->{manifest}, '... byte for byte');

    $r = curl_answer(@alice, "$base/v2/alice/h2/blobs/$i->{layer_digest}");
    is(RegTest::digest($r->{content}), $i->{layer_digest},
       'TLS: alice pulls the layer');

    $r = curl_answer(@alice, '-X', 'POST', "$base/v2/public/h2/blobs/uploads/");
    is("$r->{status} $r->{code} $r->{version}", '403 DENIED 2',
       'TLS: alice pushing public/h2: 403 DENIED in JSON over HTTP/2');
    is($r->{headers}{'content-type'}, 'application/json', '... JSON');
    ok(!-e v2($x) . '/repositories/public/h2', '... nothing stored');

    $r = curl_answer(@h2, "$base/v2/alice/h2/tags/list");
    is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
       'TLS: an anonymous pull of alice/h2: 401');

    my ($rc, $out) = skopeo('copy', '--dest-cert-dir', cert_dir(),
                            '--dest-creds', "alice:$pw{alice}", $layout,
                            "docker://127.0.0.1:$port/alice/skopeo:v1");
    is($rc, 0, 'TLS: skopeo push as alice, the server verified against the CA')
        or diag($out);
    is_deeply(tags_of($x, 'alice/skopeo'), ['v1'], '... tagged v1');

    stop_example($x, 'tls-http2.conf');
}

###############################################################################
# mtls.conf: the certificate names the user

{
    my $port = free_port();
    my $x = start_example('mtls.conf', { 443 => $port });
    my $base = "https://127.0.0.1:$port";
    my @h2 = ('--http2', '--cacert', "$pki/ca.crt");
    my %cert = map { $_ => ['--cert', "$pki/$_.crt", '--key', "$pki/$_.key"] }
               qw(alice bob carol mallory);

    my $r = curl_answer(@h2, "$base/v2/");
    is("$r->{status} $r->{code}", '400 UNAUTHORIZED',
       'mTLS: no client certificate: 400, UNAUTHORIZED in JSON');
    like($r->{content}, qr/no valid client certificate/, '... detail');
    is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
       '... the API version header');

    $r = curl_answer(@h2, @{ $cert{mallory} }, "$base/v2/");
    is("$r->{status} $r->{code}", '400 UNAUTHORIZED',
       "mTLS: alice's name from another CA: 400 UNAUTHORIZED");

    my $i = curl_push_image($base, 'team-a/m', @h2, @{ $cert{alice} });
    is($i->{status}, '201 201 201', "mTLS: alice's certificate pushes team-a/m");

    $r = curl_answer(@h2, @{ $cert{alice} }, "$base/v2/team-a/m/manifests/v1");
    is("$r->{status} $r->{version}", '200 2', 'mTLS: alice pulls team-a/m');
    is($r->{content}, $i->{manifest}, '... byte for byte');

    $r = curl_answer(@h2, @{ $cert{bob} }, "$base/v2/team-a/m/manifests/v1");
    is("$r->{status} $r->{code}", '403 DENIED', 'mTLS: bob may not pull team-a/m');

    $r = curl_answer(@h2, @{ $cert{bob} }, '-X', 'POST',
                     "$base/v2/team-a/m/blobs/uploads/");
    is("$r->{status} $r->{code}", '403 DENIED', 'mTLS: bob may not push there');

    $r = curl_answer(@h2, @{ $cert{carol} }, "$base/v2/");
    is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
       'mTLS: a subject outside OU=registry is anonymous: 401');

    like(RegTest::slurp($x->{access}),
         qr{"CN=alice,OU=registry,O=Example" \[[^]]+\] "PUT /v2/team-a/m/manifests/v1 HTTP/2\.0" 201 },
         "mTLS: the access log names alice's subject");

    my ($rc, $out) = skopeo('copy', '--dest-cert-dir', cert_dir('alice'),
                            $layout, "docker://127.0.0.1:$port/team-a/skopeo:v1");
    is($rc, 0, "mTLS: skopeo push with alice's certificate") or diag($out);
    is_deeply(tags_of($x, 'team-a/skopeo'), ['v1'], '... tagged v1');

    ($rc, $out) = skopeo('copy', '--dest-cert-dir', cert_dir('bob'),
                         $layout, "docker://127.0.0.1:$port/team-a/skopeo:bob");
    isnt($rc, 0, "mTLS: skopeo push with bob's certificate fails");
    like($out, qr/denied|403 \(Forbidden\)/, '... 403 (its first HEAD)');
    is_deeply(tags_of($x, 'team-a/skopeo'), ['v1'], '... no tag added');

    stop_example($x, 'mtls.conf');
}

###############################################################################
# auth-request.conf: the identity service names the user

{
    my $port = free_port();
    my $identity = free_port();
    my $x = start_example('auth-request.conf', { 5000 => $port }, subst => [
        [qr/server 127\.0\.0\.1:9000;/, "server 127.0.0.1:$identity;"],
        [qr/\}\s*\z/, identity_stub($identity,
                                    basic('alice', $pw{alice}) => 'alice',
                                    'Bearer token-of-carol' => 'carol')
                      . "}\n"],
    ]);
    my $base = "http://127.0.0.1:$port";
    my @carol = ('-H', 'Authorization: Bearer token-of-carol');

    my $i = curl_push_image($base, 'carol/app', @carol);
    is($i->{status}, '201 201 201',
       'auth_request: the token the service knows as carol pushes carol/app');
    like(RegTest::slurp($x->{access}),
         qr{"carol" \[[^]]+\] "PUT /v2/carol/app/manifests/v1 HTTP/1\.1" 201 },
         '... and the access log says carol');

    my $r = curl_answer(@carol, '-X', 'POST', "$base/v2/alice/app/blobs/uploads/");
    is("$r->{status} $r->{code}", '403 DENIED',
       'auth_request: carol pushing alice/app: 403 DENIED');

    $r = curl_answer(@carol, "$base/v2/alice/app/tags/list");
    is($r->{status}, 404, 'auth_request: carol may pull anything (no such repository)');

    $r = curl_answer('-u', 'alice:wrong', "$base/v2/");
    is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
       "auth_request: the service's 401 is UNAUTHORIZED in JSON");
    is($r->{headers}{'www-authenticate'}, 'Basic realm="registry"',
       "... with the service's challenge");
    is($r->{headers}{'content-type'}, 'application/json', '... JSON');

    $r = curl_answer("$base/v2/");
    is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
       'auth_request: anonymous /v2/ is challenged');

    $r = curl_answer("$base/v2/carol/app/manifests/v1");
    is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
       'auth_request: anonymous pull of carol/app: 401');

    my $reg2 = "127.0.0.1:$port";

    my ($rc, $out, $err) = $e->login($reg2, 'alice', 'wrong');
    isnt($rc, 0, 'auth_request: docker login with a wrong password fails');

    ($rc, $out, $err) = $e->login($reg2, 'alice', $pw{alice});
    is($rc, 0, 'auth_request: docker login alice') or diag("$out$err");
    $e->docker_ok('docker tag', 'tag', "$mirror/public/hello:v1",
                  "$reg2/alice/app:v1");
    $e->docker_ok('auth_request: docker push alice/app:v1', 'push',
                  "$reg2/alice/app:v1");
    is_deeply(tags_of($x, 'alice/app'), ['v1'], '... tagged v1');
    $e->logout($reg2);

    ($rc, $out) = skopeo('copy', '--dest-tls-verify=false', '--dest-creds',
                         "alice:$pw{alice}", $layout,
                         "docker://$reg2/alice/skopeo:v1");
    is($rc, 0, 'auth_request: skopeo push as alice') or diag($out);

    ($rc, $out) = skopeo('copy', '--src-tls-verify=false', '--src-creds',
                         "alice:$pw{alice}", "docker://$reg2/alice/skopeo:v1",
                         "dir:$tmp/ar-pulled");
    is($rc, 0, 'auth_request: skopeo pull as alice') or diag($out);
    is(-f "$tmp/ar-pulled/manifest.json" ? dir_image("$tmp/ar-pulled")->{digest} : '',
       $img->{digest}, '... the same manifest');

    stop_example($x, 'auth-request.conf');
}

ok($e->stop, 'dockerd and containerd stopped');

note(sprintf('auth_clients.t ran %.1f s', Time::HiRes::time() - $started));

done_testing();
