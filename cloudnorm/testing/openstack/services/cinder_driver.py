"""The sandbox's volume backend: Cinder's own ``FakeLoggingVolumeDriver``, made to take images.

Why this driver: every real Cinder backend needs a kernel block device, an iSCSI or NVMe
target, LVM or a storage array. ``cinder.tests.fake_driver.FakeLoggingVolumeDriver``
(shipped in the cinder wheel, used by Cinder's own functional tests) keeps Cinder's whole
volume manager (scheduling, quotas, state machine, attachments, connection info) and
replaces only the last step, the storage itself: its LVM commands go to a fake volume
group and its target is Cinder's ``fake`` target. ``FakeGateDriver`` is the real LVM
driver with extra features, so it needs LVM. Volumes hold no data: no guest reads them.

What the fake lacks is a way to turn an image into a volume: it inherits LVM's, which
writes onto the logical volume's device with ``qemu-img convert``. Here that step checks
the image as Cinder does (format, virtual size against the volume's) and writes nothing.
Cinder downloads the image from Glance before that (with the caller's token), as it
always does. ``qemu-img`` is not installed: ``qemu_img_info`` answers from Cinder's own
pure-Python format inspector instead, which Cinder already runs on every image before
asking qemu-img.
"""

from __future__ import annotations

import json
import os

from cinder import exception
from cinder.image import format_inspector, image_utils
from cinder.tests import fake_driver
from oslo_utils import imageutils


def qemu_img_info(path, run_as_root=True, force_share=False,
                  allow_qcow2_backing_file=False, img_format=None):
    """What ``qemu-img info --output=json`` reports on ``path``, from the format inspector.

    Same signature and errors as ``cinder.image.image_utils.qemu_img_info``.
    """
    path = os.path.abspath(path)
    inspector = format_inspector.detect_file_format(path)
    format_name = img_format or str(inspector)
    if img_format != "raw":
        safe = inspector.safety_check() or (
            format_name == "qcow2" and allow_qcow2_backing_file
            and inspector.safety_check_allow_backing_file())
        if not safe:
            # The error Cinder raises when its own inspection refuses a file.
            raise exception.Invalid(reason="Image/Volume failed safety check")
    actual_size = os.path.getsize(path)
    # A raw image's virtual size is its length; the inspector stops reading early.
    virtual_size = actual_size if format_name == "raw" else inspector.virtual_size
    report = {"filename": path, "format": format_name, "virtual-size": virtual_size,
              "actual-size": actual_size}
    return imageutils.QemuImgInfo(json.dumps(report), format="json")


class SandboxVolumeDriver(fake_driver.FakeLoggingVolumeDriver):
    """FakeLoggingVolumeDriver that accepts images for volumes created from them."""

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        image_meta = image_service.show(context, image_id)
        downloaded = image_utils.TemporaryImages.for_image_service(image_service).get(
            context, image_id)
        if downloaded is not None:
            self._check_image(downloaded, image_meta, volume, image_id)
            return
        with image_utils.temporary_file(prefix=f"image_download_{image_id}_") as path:
            image_utils.fetch_verify_image(context, image_service, image_id, path)
            self._check_image(path, image_meta, volume, image_id)

    @staticmethod
    def _check_image(path, image_meta, volume, image_id):
        data = qemu_img_info(path)
        image_utils.check_virtual_size(data.virtual_size, volume.size, image_id)
        # Glance's disk_format must be what the data is, as LVM's conversion demands.
        image_utils.check_image_format(path, src_format=image_meta.get("disk_format"),
                                       image_id=image_id, data=data)
