#!/usr/bin/perl

# podman against the module: `podman build` (FROM scratch, three COPY
# layers, env, labels, exposed port) into one storage, `podman push` as it
# is (OCI) and as Docker schema 2; `podman pull` by tag and by digest into
# separate, empty storages must give the same image (id, digests, diff ids,
# config, file bytes); the pulled image is pushed again to a second
# repository (its layers mounted across repositories, not sent again),
# under a second tag with `podman tag`; `podman search` lists
# repositories and tags; `podman images` and `podman rmi`, and a pull into
# an emptied storage fetches every blob again.

use strict;
use warnings;

use Test::More;
use Digest::SHA ();
use File::Path qw(make_path);
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools slurp spew sha256_file json_decode);
use RegContainers qw(gunzip_digest uploads_in_log mounts_in_log log_since
                     processes_mentioning upload_sessions);

need_tools(qw(podman));

# rootless podman would need user namespaces and /etc/subuid

plan(skip_all => 'podman runs as root here') unless $> == 0;

my $OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
my $DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
my $ACCEPT = join(', ', $OCI_MANIFEST, $DOCKER_MANIFEST,
                  'application/vnd.oci.image.index.v1+json',
                  'application/vnd.docker.distribution.manifest.list.v2+json');

my $tmp = tempdir('podman-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $c = RegContainers->new($tmp);

sub podman_ok {
    my ($name, $storage, @args) = @_;

    my ($rc, $out, $err) = $c->podman($storage, @args);

    is($rc, 0, $name) or diag("podman @args\n$out$err");

    return $out;
}

sub last_line {
    my ($text) = @_;
    my @l = grep { /\S/ } split /\n/, $text // '';
    return @l ? $l[-1] : '';
}

sub inspect {
    my ($name, $storage, $ref) = @_;
    my $out = podman_ok("podman image inspect $name", $storage,
                        'image', 'inspect', $ref);
    return ((json_decode($out) || [])->[0] || {});
}

###############################################################################
# build

my %files;

{
    my $bin = '';
    my $h = 'podman-seed';
    while (length($bin) < 256 * 1024) {
        $h = Digest::SHA::sha256($h);
        $bin .= $h;
    }

    %files = (
        '/etc/hello.txt'         => "hello from podman\n",
        '/opt/data.bin'          => $bin,
        '/srv/tree/one.conf'     => "key = value\n",
        '/srv/tree/sub/two.txt'  => join("\n", 1 .. 3000),
    );

    for my $p (keys %files) {
        my $f = "$tmp/ctx/files$p";
        make_path($f =~ s{/[^/]+$}{}r);
        spew($f, $files{$p});
    }

    spew("$tmp/ctx/Containerfile", <<'EOF');
FROM scratch
COPY files/etc/hello.txt /etc/hello.txt
COPY files/opt/data.bin /opt/data.bin
COPY files/srv/tree /srv/tree
ENV GREETING=hello
LABEL org.example.test=ngx-registry
WORKDIR /srv
EXPOSE 8080/tcp
CMD ["/bin/cat", "/etc/hello.txt"]
EOF
}

my $id = 'sha256:' . last_line(
    podman_ok('podman build', 'build', 'build', '-q', '--format', 'oci',
              '-t', 'localhost/pm/img:v1', "$tmp/ctx"));
like($id, qr/^sha256:[0-9a-f]{64}$/, "built image $id");

my $built = inspect('(built)', 'build', 'localhost/pm/img:v1');
my @diff_ids = @{ $built->{RootFS}{Layers} || [] };
is(scalar @diff_ids, 3, 'built image has three layers');
is("sha256:$built->{Id}", $id, 'built image id');

###############################################################################
# push, as it is and as Docker schema 2

my $t = RegTest->new(delete => 1);
my $reg = '127.0.0.1:' . $t->port;
my $access = $t->dir . '/access.log';

my %pushed;

for my $p (['v1', [], $OCI_MANIFEST,
            'application/vnd.oci.image.layer.v1.tar+gzip'],
           ['v2s2', ['--format', 'v2s2'], $DOCKER_MANIFEST,
            'application/vnd.docker.image.rootfs.diff.tar.gzip']) {
    my ($tag, $opts, $type, $layer_type) = @$p;

    my $offset = -s $access;

    podman_ok("podman push ($tag)", 'build', 'push', '-q',
              '--tls-verify=false', '--digestfile', "$tmp/digest-$tag", @$opts,
              'localhost/pm/img:v1', "docker://$reg/pm/img:$tag");

    my $log = log_since($access, $offset);

    my $r = $t->req('GET', "/v2/pm/img/manifests/$tag",
                    headers => { Accept => $ACCEPT });
    is($r->{status}, 200, "$tag: GET manifest");
    is($r->{headers}{'content-type'}, $type, "$tag: media type");

    my $digest = RegTest::digest($r->{content});
    is($r->{headers}{'docker-content-digest'}, $digest, "$tag: digest header");
    is(-f "$tmp/digest-$tag" ? slurp("$tmp/digest-$tag") : '', $digest,
       "$tag: podman's --digestfile names it");

    my $m = json_decode($r->{content}) || {};
    $pushed{$tag} = { digest => $digest, manifest => $m };

    is($m->{config}{digest}, $id, "$tag: config digest = image id");
    is(RegTest::digest($t->req('GET', "/v2/pm/img/blobs/$id")->{content}), $id,
       "$tag: config bytes");

    my @layers = @{ $m->{layers} || [] };
    is(scalar @layers, 3, "$tag: three layers");

    for my $i (0 .. $#layers) {
        my $d = $layers[$i]{digest};
        is($layers[$i]{mediaType}, $layer_type, "$tag: layer $i media type");

        $r = $t->req('GET', "/v2/pm/img/blobs/$d");
        is(RegTest::digest($r->{content}), $d, "$tag: layer $i bytes");
        is(gunzip_digest($r->{content}), $diff_ids[$i],
           "$tag: layer $i gunzips to its diff id");
    }

    # the first push sends everything; the second finds the same blobs
    # with HEAD (gzip is deterministic) and sends only the manifest

    my $up = uploads_in_log($log, 'pm/img');

    if ($tag eq 'v1') {
        ok($up->{$_}, "$tag: $_ uploaded")
            for $id, map { $_->{digest} } @layers;
    } else {
        for my $d ($id, map { $_->{digest} } @layers) {
            ok($up->{$d} || $log =~ m{"HEAD /v2/pm/img/blobs/\Q$d\E HTTP/1\.1" 200 },
               "$tag: $d uploaded or found by HEAD");
        }
    }
}

is_deeply([map { $_->{digest} } @{ $pushed{v2s2}{manifest}{layers} }],
          [map { $_->{digest} } @{ $pushed{v1}{manifest}{layers} }],
          'both formats share the layer blobs');

###############################################################################
# pull into an empty storage: by tag, the other tag, by digest

my $pulled = last_line(podman_ok('podman pull by tag into an empty storage',
                                 'pull', 'pull', '-q', '--tls-verify=false',
                                 "$reg/pm/img:v1"));
is("sha256:$pulled", $id, 'pulled image id = built image id');

my $info = inspect('(pulled)', 'pull', "$reg/pm/img:v1");
is($info->{Digest}, $pushed{v1}{digest}, 'pulled: Digest = pushed manifest');
is_deeply($info->{RootFS}{Layers}, \@diff_ids, 'pulled: same diff ids');
ok((grep { $_ eq "$reg/pm/img\@$pushed{v1}{digest}" }
    @{ $info->{RepoDigests} || [] }), 'pulled: RepoDigests');
is_deeply($info->{Config}{Env}, $built->{Config}{Env}, 'pulled: env');
is_deeply($info->{Config}{Cmd}, ['/bin/cat', '/etc/hello.txt'], 'pulled: cmd');
is($info->{Config}{WorkingDir}, '/srv', 'pulled: working dir');
is($info->{Config}{Labels}{'org.example.test'}, 'ngx-registry', 'pulled: label');
ok(exists $info->{Config}{ExposedPorts}{'8080/tcp'}, 'pulled: exposed port');

$pulled = last_line(podman_ok('podman pull the schema 2 tag', 'pull', 'pull',
                              '-q', '--tls-verify=false', "$reg/pm/img:v2s2"));
is("sha256:$pulled", $id, 'schema 2 tag: same image id');

{
    my $list = json_decode(podman_ok('podman images', 'pull', 'images',
                                     '--format', 'json')) || [];
    # one row per name, all of the one image

    my %ids = map { ($_->{Id} // '') => 1 } @$list;
    is_deeply([keys %ids], [substr($id, 7)], 'podman images: one image id');

    my %names = map { $_ => 1 } map { @{ $_->{Names} || [] } } @$list;
    is_deeply([sort keys %names], ["$reg/pm/img:v1", "$reg/pm/img:v2s2"],
              'podman images: both tags');

    my $table = podman_ok('podman image list (table)', 'pull', 'image',
                          'list', '--format', '{{.Repository}} {{.Tag}}');
    is(join(',', sort grep { /\S/ } split /\n/, $table),
       "$reg/pm/img v1,$reg/pm/img v2s2", 'podman image list: repository, tag');
}

$pulled = last_line(podman_ok('podman pull by digest into an empty storage',
                              'pull-digest', 'pull', '-q', '--tls-verify=false',
                              "$reg/pm/img\@$pushed{v1}{digest}"));
is("sha256:$pulled", $id, 'pulled by digest: same image id');
is(inspect('(by digest)', 'pull-digest',
           "$reg/pm/img\@$pushed{v1}{digest}")->{Digest},
   $pushed{v1}{digest}, 'pulled by digest: Digest');

{
    my $path = last_line(podman_ok('podman image mount', 'pull', 'image',
                                   'mount', "$reg/pm/img:v1"));

    for my $f (sort keys %files) {
        my $got = -f "$path$f" ? slurp("$path$f") : undef;
        ok(defined $got && $got eq $files{$f}, "pulled image: $f intact");
    }

    podman_ok('podman image unmount', 'pull', 'image', 'unmount',
              "$reg/pm/img:v1");
}

###############################################################################
# the pulled image to a second repository, then a second tag with
# `podman tag` + push

{
    my $offset = -s $access;

    podman_ok('podman push of the pulled image to pm/copy', 'pull', 'push',
              '-q', '--tls-verify=false', '--digestfile', "$tmp/digest-copy",
              "$reg/pm/img:v1", "docker://$reg/pm/copy:v1");

    my $log = log_since($access, $offset);

    my $r = $t->req('GET', '/v2/pm/copy/manifests/v1',
                    headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'pm/copy: GET manifest');

    my $digest = RegTest::digest($r->{content});
    is(-f "$tmp/digest-copy" ? slurp("$tmp/digest-copy") : '', $digest,
       'pm/copy: --digestfile');

    my $m = json_decode($r->{content}) || {};
    is($m->{config}{digest}, $id, 'pm/copy: config = image id');
    is(RegTest::digest($t->req('GET', "/v2/pm/copy/blobs/$id")->{content}),
       $id, 'pm/copy: config bytes');

    my @layers = map { $_->{digest} } @{ $m->{layers} || [] };
    is(scalar @layers, 3, 'pm/copy: three layers');
    is_deeply(\@layers, [map { $_->{digest} } @{ $pushed{v1}{manifest}{layers} }],
              'pm/copy: the layer blobs of pm/img');

    for my $i (0 .. $#layers) {
        $r = $t->req('GET', "/v2/pm/copy/blobs/$layers[$i]");
        is(RegTest::digest($r->{content}), $layers[$i],
           "pm/copy: layer $i bytes");
        is(gunzip_digest($r->{content}), $diff_ids[$i],
           "pm/copy: layer $i gunzips to its diff id");
    }

    # podman pulled the layers from pm/img, so its blob-info cache knows
    # them there: it asks for a cross-repository mount
    # (?mount=D&from=pm/img) and the module answers 201, no byte of a layer
    # is sent again.  The config is written with a plain upload
    # (containers/image looks only in the destination repository for a
    # config, with HEAD, and never mounts one); it must get there either
    # way.

    my $up = uploads_in_log($log, 'pm/copy');
    my $mnt = mounts_in_log($log, 'pm/copy');

    ok($up->{$id} || $mnt->{$id}, "pm/copy: config $id uploaded or mounted");

    for my $d (@layers) {
        ok($mnt->{$d} && !$up->{$d}, "pm/copy: $d mounted, not uploaded")
            or diag("uploads: @{[ sort keys %$up ]}\n"
                    . "mounts: @{[ sort keys %$mnt ]}");
    }

    podman_ok('podman tag', 'pull', 'tag', "$reg/pm/img:v1",
              "$reg/pm/copy:v2");
    podman_ok('podman push of the new tag', 'pull', 'push', '-q',
              '--tls-verify=false', "$reg/pm/copy:v2");

    $r = $t->req('GET', '/v2/pm/copy/tags/list');
    is_deeply((json_decode($r->{content}) || {})->{tags}, ['v1', 'v2'],
              'pm/copy: tags v1, v2');

    $r = $t->req('HEAD', '/v2/pm/copy/manifests/v2',
                 headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'pm/copy:v2 exists');
}

###############################################################################
# search: the catalog, the tags

{
    my $out = podman_ok('podman search', 'pull', 'search', '--tls-verify=false',
                        '--format', 'json', "$reg/pm");
    my @names = sort map { $_->{Name} } @{ json_decode($out) || [] };
    is_deeply(\@names, ["$reg/pm/copy", "$reg/pm/img"],
              'podman search lists both repositories');

    $out = podman_ok('podman search --list-tags', 'pull', 'search',
                     '--tls-verify=false', '--list-tags', '--format', 'json',
                     "$reg/pm/img");
    my $tags = (json_decode($out) || [])->[0] || {};
    is($tags->{Name}, "$reg/pm/img", 'podman search --list-tags: name');
    is_deeply([sort @{ $tags->{Tags} || [] }], ['v1', 'v2s2'],
              'podman search --list-tags: tags');
}

###############################################################################
# rmi, then pull into the emptied storage: every blob comes from the
# registry again

{
    podman_ok('podman rmi --all', 'pull', 'rmi', '--all', '--force');
    is(podman_ok('podman images -q after rmi', 'pull', 'images', '-q'), '',
       'storage is empty');

    my $offset = -s $access;

    $pulled = last_line(podman_ok('podman pull again', 'pull', 'pull', '-q',
                                  '--tls-verify=false', "$reg/pm/img:v1"));
    is("sha256:$pulled", $id, 'pulled again: same image id');

    my $log = log_since($access, $offset);

    for my $d ($id, map { $_->{digest} } @{ $pushed{v1}{manifest}{layers} }) {
        like($log, qr{"GET /v2/pm/img/blobs/\Q$d\E HTTP/1\.1" 200 },
             "pulled again: GET $d");
    }
}

###############################################################################

ok(-s $c->blob_info_cache, 'the blob-info cache is the private one');

is(join("\n", processes_mentioning($tmp)), '',
   'no process left with the test directory in its command or environment');

# every upload session was completed or cancelled (a mount attempt answered
# 202 opens one)

is(join("\n", upload_sessions($t->root)), '', 'no upload session left behind');

$t->stop;

done_testing();
