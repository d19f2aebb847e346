"""Steps 1 to 5 of a create: node key, discovery, choice, boot, public address.

Each step reads and fills the :class:`~cloudnorm.provision.context.Run`, reports
through it, and registers what it makes in its ledger.
"""

from __future__ import annotations

import attrs

from cloudnorm import errors, flavors, keys, networks, parallel, profiles, userdata
from cloudnorm.drivers.base import BootSpec, Created
from cloudnorm.models import CREATE_KEY, Address, Decision, Flavor, Image, Server
from cloudnorm.provision.context import Run
from cloudnorm.provision.ledger import STEPS, Reporter
from cloudnorm.state import ServerState, booted


def register_node_key(run: Run) -> None:
    """1: the node key, registered the cloud's way; first the request is checked
    against what the cloud takes, so nothing is made for a request it would refuse."""
    run.step = STEPS[0]
    check_request(run)
    key = run.request.key
    run.report.emit(run.step, "started", "creating a throw-away ed25519 key" if key is None
                    else f"using the caller's key {key.name}")
    run.node_key = key or keys.generate(run.key_name)
    run.cloud.create_keypair(run.key_name, run.node_key.public_key)
    run.ledger.add(Created("keypair", run.key_name, run.key_name))
    run.report.emit(run.step, "done", f"key pair {run.key_name} registered")


def check_request(run: Run) -> None:
    """Refuse what the cloud would refuse later, after resources exist."""
    request = run.request
    run.driver.check_options(request.availability_zone, request.security_groups)
    caps = run.driver.capabilities
    if not (caps.block_storage or caps.root_is_volume):
        for field, value in (("boot_from_volume", request.boot_from_volume),
                             ("volume_size", request.volume_size),
                             ("volumes", request.volumes)):
            if value:
                raise errors.InvalidRequest(
                    f"{field}: this cloud has no block storage (no volume service in its "
                    "catalog), so it makes no volumes", cloud=run.cloud.name, field=field)
    data, limit = request.userdata, caps.user_data_limit
    if data is not None:
        if limit is None:
            raise errors.InvalidRequest("this cloud passes no user data to its servers",
                                        cloud=run.cloud.name, field="userdata")
        userdata.check_size(data, limit, run.cloud.name)


def discover(run: Run) -> None:
    """2: images, flavors and networks, through the cache."""
    run.step = STEPS[1]
    cloud = run.cloud
    run.report.emit(run.step, "started", "listing images, flavors and networks (cached)")
    all_images, all_flavors, view = parallel.all_at_once(
        [cloud.list_images, cloud.list_flavors, cloud.network_view])
    run.report.emit(run.step, "done", f"{len(all_images)} images, {len(all_flavors)} flavors, "
                    + (f"{len(view[0])} networks" if view else "no network service"))


def choose(run: Run) -> None:
    """3: image, flavor, network and the way in, each with its reason."""
    run.step = STEPS[2]
    cloud, request, report = run.cloud, run.request, run.report
    report.emit(run.step, "started", "choosing image, flavor and network")
    run.image = choose_image(run)
    run.flavor = choose_flavor(run, run.image)
    run.root = root_disk(run, run.image, run.flavor)
    report.decide(run.root.decision)
    view = cloud.network_view()
    if view is not None:
        nets = view[0]
        if request.network:
            run.attach = next((n for n in nets if request.network in (n.name, n.id)), None)
            if run.attach is None:
                raise errors.NotFound(
                    f"no network '{request.network}'; known: "
                    + ", ".join(n.name for n in nets), cloud=cloud.name)
            report.decide(Decision("network", run.attach.name, "asked for by the caller"))
        else:
            run.attach, decision = networks.choose_attach_network(nets, view[1],
                                                                  cloud.network_hints())
            report.decide(decision)
    run.public, access_why = run.cloud.settings.public_access(run.request.public)
    run.plan = (cloud.plan_public_address(run.attach) if run.public
                else networks.private_access(access_why))
    report.decide(run.plan.decision)
    # Decided before booting: some clouds install the node key for one named user.
    run.users, run.users_why = login_candidates(run)
    report.emit(run.step, "done", f"{run.image.name} / {run.flavor.name} / "
                f"{run.attach.name if run.attach else 'network chosen by the cloud'}")


def boot(run: Run) -> None:
    """4: ask for the server, with SSH let in by a group cloudnorm owns, and its
    interface made first where the cloud allows, so a floating IP goes on while it
    boots."""
    run.step = STEPS[3]
    cloud, driver, report, request = run.cloud, run.driver, run.report, run.request
    assert run.image is not None and run.flavor is not None and run.plan is not None
    assert run.root is not None
    if driver.capabilities.security_groups:
        run.group = run.ledger.add(driver.create_ssh_access(run.owner))
        report.decide(Decision("ssh_access", run.group.description,
                               "security group owned by cloudnorm lets TCP 22 in"))
    else:
        report.decide(Decision("ssh_access", "none", "the cloud has no security groups "
                               f"(profile '{cloud.profile.name}'): nothing to open"))
    report.emit(run.step, "started", "booting")
    group_id = run.group.id if run.group else None
    if run.plan.floating_ip and request.wait and driver.capabilities.prebuilt_ports:
        assert run.attach is not None
        groups = ((group_id,) if group_id else ()) + request.security_groups
        run.port = run.ledger.add(driver.make_port(run.attach, run.owner, groups))
    spec = BootSpec(
        name=request.name, image=run.image, flavor=run.flavor, network=run.attach,
        key_name=run.key_name, owner=run.owner, security_group=group_id,
        config_drive=cloud.profile.config_drive, metadata=boot_metadata(run),
        login_user=run.users[0] if len(run.users) == 1 else None,
        port=run.port.id if run.port else None, user_data=request.userdata,
        availability_zone=request.availability_zone,
        security_groups=request.security_groups, public_address=run.public,
        boot_from_volume=run.root.volume, root_size=run.root.size,
        data_volumes=request.volumes)
    spec = driver.make_volumes(spec, run.ledger.add, run.deadline)
    if spec.volume_ids:
        report.emit(run.step, "waiting", f"{len(spec.volume_ids)} volume(s) made with "
                    "cloudnorm's marker; booting from them")
    run.server_id = run.ledger.add(driver.boot(spec)).id
    cloud.refresh("server")
    if run.port is not None:
        # The server's interface exists already: its floating IP goes on while it
        # boots, instead of after (step 5's work, and its failure if it fails).
        assert run.attach is not None
        run.step = STEPS[4]
        pending = attrs.evolve(_placeholder(run), phase="pending")
        run.attached = driver.attach_public_address(pending, run.attach, list(run.plan.pools),
                                                    run.owner, port=run.port)
        run.ledger.add(run.attached[0])
        run.step = STEPS[3]


def boot_metadata(run: Run) -> dict[str, str]:
    """The caller's tags, and for a create that waits, the mark that it is under way
    (replaced by ``done`` at its end)."""
    if run.request.wait and run.driver.capabilities.server_metadata:
        return {**run.request.tags, CREATE_KEY: "in-progress"}
    return dict(run.request.tags)


def requested(run: Run) -> Server:
    """The server as the cloud shows it right after the request (``wait=False``)."""
    run.report.emit(run.step, "done", f"server {run.server_id} requested; not waiting")
    state = run.driver.poll_servers({run.server_id}).get(run.server_id) or _placeholder(run)
    return attrs.evolve(run.driver.normalize_server(state, run.cloud.list_networks()),
                        decisions=tuple(run.report.decisions))


def wait_for_boot(run: Run) -> None:
    """4, continued: until the server runs; a failed boot raises the cloud's reason."""
    run.report.emit(run.step, "waiting", f"server {run.server_id} requested; waiting for it "
                    "to run")
    state = run.cloud.watcher.wait(run.server_id, booted, run.deadline)
    name = run.request.name
    if state is None:
        raise errors.ProviderError(f"server {run.server_id} vanished while booting",
                                   cloud=run.cloud.name)
    if state.phase == "error":
        fault = state.fault or "no reason given"
        if state.quota:
            raise errors.QuotaExceeded(f"server {name} failed: {fault}",
                                       resource="instances", cloud=run.cloud.name)
        raise errors.ProviderError(f"server {name} went to ERROR: {fault}",
                                   status="ERROR", cloud=run.cloud.name)
    run.state = state
    run.report.emit(run.step, "done", f"server {run.server_id} running")


def public_address(run: Run) -> None:
    """5: a public address the way this cloud needs it, and the one to SSH to."""
    run.step = STEPS[4]
    driver, report, plan, attach = run.driver, run.report, run.plan, run.attach
    assert plan is not None and run.state is not None
    report.emit(run.step, "started", plan.decision.choice)
    server = driver.normalize_server(run.state, run.cloud.list_networks())
    if plan.method == "port_forwarding":
        assert attach is not None
        forwarding, address, run.ssh_port, notes = driver.forward_ssh_port(
            run.state, attach, run.owner)
        run.ledger.add(forwarding)
        server = _with_address(server, address, notes, report)
    elif plan.floating_ip:
        assert attach is not None
        if run.attached is None:
            run.attached = driver.attach_public_address(run.state, attach, list(plan.pools),
                                                        run.owner)
            run.ledger.add(run.attached[0])
        _, address, notes = run.attached
        # The network view stays cached: a new floating IP only confirms the pool
        # it came from, and re-listing five kinds of records per create is not free.
        server = _with_address(server, address, notes, report)
    if plan.private:
        interface, why = networks.choose_private_interface(server.addresses)
        if interface is None:
            raise errors.NotReachable(
                f"server {run.request.name} has no address of its own ({why}); private "
                "access reaches a server on its private address", cloud=run.cloud.name)
    else:
        interface, why = networks.choose_interface(server.addresses)
        if interface is None or not interface.public:
            raise errors.NotReachable(
                f"server {run.request.name} has no public address ({why}); its addresses: "
                + (", ".join(f"{a.ip} ({a.reason})" for a in server.addresses) or "none"),
                cloud=run.cloud.name)
    report.decide(Decision("interface", interface.ip, why))
    report.emit(run.step, "done", f"{interface.ip} port {run.ssh_port} ({interface.reason}"
                + ("; attached while the server booted)" if run.port is not None else ")"))
    run.server, run.interface = server, interface


def _placeholder(run: Run) -> ServerState:
    return ServerState(id=run.server_id, name=run.request.name, phase="pending",
                       status="requested", owner=run.owner)


def _with_address(server: Server, address: Address, notes: list[Decision],
                  report: Reporter) -> Server:
    for note in notes:
        report.decide(note)
    if any(a.ip == address.ip for a in server.addresses):
        return server
    return attrs.evolve(server, addresses=(*server.addresses, address),
                        public_v4=address.ip if address.version == 4 else server.public_v4,
                        interface_ip=address.ip)


def choose_image(run: Run) -> Image:
    image, report = run.request.image, run.report
    assert image is not None  # CreateRequest.with_defaults names one
    if isinstance(image, Image):
        report.decide(Decision("image", image.name, "given by the caller"))
        return image
    by_id = [i for i in run.cloud.list_images() if image in (i.id, i.name)]
    if len(by_id) == 1:
        report.decide(Decision("image", by_id[0].name, "named by the caller"))
        return by_id[0]
    chosen, decision = run.cloud.choose_image(image)
    report.decide(decision)
    return chosen


def choose_flavor(run: Run, image: Image) -> Flavor:
    flavor, request, report = run.request.flavor, run.request, run.report
    if isinstance(flavor, Flavor):
        report.decide(Decision("flavor", flavor.name, "given by the caller"))
        return flavor
    if flavor:
        named = [f for f in run.cloud.list_flavors() if flavor in (f.id, f.name)]
        if not named:
            raise errors.NotFound(f"no flavor '{flavor}' in cloud '{run.cloud.name}'",
                                  cloud=run.cloud.name)
        report.decide(Decision("flavor", named[0].name, "named by the caller"))
        return named[0]
    chosen, decision = run.cloud.choose_flavor(
        min_ram=max(request.min_ram or 0, image.min_ram) or None, min_vcpus=request.min_vcpus,
        min_disk=max(request.volume_size or 0, image.min_disk) or None,
        boot_from_volume=request.boot_from_volume)
    report.decide(decision)
    return chosen


#: GiB of a root volume when neither the caller, the image nor the flavor gives a size.
DEFAULT_ROOT_VOLUME = 10


def root_disk(run: Run, image: Image, flavor: Flavor) -> RootDisk:
    """Where the root disk lives and how big it is, with the reason."""
    request, caps = run.request, run.driver.capabilities
    if caps.root_is_volume:
        size = request.volume_size
        return RootDisk(True, size, Decision(
            "root_disk", f"{size} GiB volume" if size else "volume of the image's size",
            "every root disk on this cloud is a block storage volume"
            + (" (volume_size asked for by the caller)" if size else "")))
    mode, no_volume = flavors.root_mode(root_is_volume=False,
                                        block_storage=caps.block_storage,
                                        boot_from_volume=request.boot_from_volume)
    if mode == "local":
        return RootDisk(False, None, Decision(
            "root_disk", f"the flavor's {flavor.disk} GiB disk", no_volume))
    if mode == "volume" or request.volume_size:
        why = ("boot_from_volume=True" if request.boot_from_volume
               else "volume_size asked for by the caller")
    elif flavor.disk == 0:
        why = (f"flavor '{flavor.name}' has disk 0: Nova lets only volume-backed servers "
               "use it")
    else:
        return RootDisk(False, None, Decision(
            "root_disk", f"the flavor's {flavor.disk} GiB disk", "no volume asked for"))
    size = request.volume_size or max(image.min_disk, flavor.disk) or DEFAULT_ROOT_VOLUME
    where = ("asked for" if request.volume_size else
             "the image's min_disk" if image.min_disk >= flavor.disk and image.min_disk
             else "the flavor's disk" if flavor.disk else "the default: nothing gave a size")
    return RootDisk(True, size, Decision("root_disk", f"{size} GiB volume",
                                         f"{why}; size: {where}"))


@attrs.frozen
class RootDisk:
    """A server's root disk: a volume or the flavor's local disk, its size in GiB
    (None: the image's), and the decision."""

    volume: bool
    size: int | None
    decision: Decision


def login_candidates(run: Run) -> tuple[list[str], str]:
    """The users to try: the caller's, the one learned or documented, else the usual ones
    probed at once."""
    assert run.image is not None
    if run.request.ssh_user:
        return [run.request.ssh_user], "asked for by the caller"
    learned = run.cloud.learned_login_user(run.image)
    if learned:
        return [learned], "learned on an earlier login to this image"
    user, why = run.cloud.login_user(run.image)
    if user:
        return [user], why
    probe = list(dict.fromkeys([*run.cloud.profile.login_users.values(),
                                *(d.login_user for d in profiles.distros().values()), "root"]))
    return probe, f"{why}; probing {len(probe)} usual users at once"
