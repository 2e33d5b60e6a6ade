"""The parameters of one version-2 phantom patient: frozen dataclasses per organ group.

LPS patient millimetres (+x patient left, +y posterior, +z superior); the frame's origin is the middle of the body at
about the level of L1/L2 (renal hila), z = 0. Every length and coordinate below is in mm.
phantom/abdomen_draw.py draws an `Anatomy`, phantom/abdomen_paint.py paints it into tissue ids; version 3
(phantom/trunk.py) changes and extends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from phantom.shapes import Ellipsoid, Tube
from phantom.tissues import TISSUE_ID as T

Z_BAND = (-120.0, 150.0)  # z range (mm) holding all four labelled organs in every drawn anatomy
NO_FLOOR = -1e4  # a z below every field of view: the structure runs on downwards


@dataclass(frozen=True)
class Body:
    """The trunk's outline and wall: an ellipse in front of the frame's centre, flattened behind it (body_norm).

    half_width: left-right half-width of the skin outline; front_depth, back_depth: from the centre to the anterior
    and to the posterior skin; fat: subcutaneous fat thickness; wall_muscle: thickness of the abdominal wall's
    muscle ring inside the fat (all mm).
    """

    half_width: float
    front_depth: float
    back_depth: float
    fat: float
    wall_muscle: float

    @property
    def cavity(self) -> tuple[float, float, float]:
        """(half-width, front depth, back depth) mm of the cavity inside the wall's muscle ring."""
        return (
            self.half_width - self.fat - self.wall_muscle,
            self.front_depth - self.fat - self.wall_muscle,
            self.back_depth - 0.5 * self.fat - self.wall_muscle,
        )


@dataclass(frozen=True)
class Spine:
    """The lumbar and thoracic spine and the muscles beside it (mm).

    body_y: y of the vertebral bodies' centre; body_radii: their (x, y) half-axes; canal_y: y of the spinal canal's
    centre; spinous_y: y of the spinous processes' posterior end. level_height: one vertebra plus one disc along z;
    disc_height: a disc's height; disc_z: z of one disc's centre (the others every level_height). bottom_z: the
    lowest z painted (version 3: the sacral promontory, below which the sacrum continues it); psoas_bottom_z: the
    lowest z of the psoas muscles.
    """

    body_y: float
    body_radii: tuple[float, float]
    canal_y: float
    spinous_y: float
    level_height: float
    disc_height: float
    disc_z: float
    bottom_z: float = NO_FLOOR
    psoas_bottom_z: float = NO_FLOOR

    @property
    def front_y(self) -> float:
        """y (mm) of the vertebral bodies' anterior surface."""
        return self.body_y - self.body_radii[1]


@dataclass(frozen=True)
class Diaphragm:
    """z (mm) of the top of the right and left domes; lower laterally and posteriorly (abdomen_paint.diaphragm_z)."""

    right_dome_z: float
    left_dome_z: float


@dataclass(frozen=True)
class Kidneys:
    """Both kidneys (ellipsoids in frames tilted along their long axes) and the fat round them (Gerota's fascia).

    perirenal_fat: thickness (mm) of the fat added to each semi-axis.
    """

    left: Ellipsoid
    right: Ellipsoid
    perirenal_fat: float

    @property
    def both(self) -> tuple[Ellipsoid, Ellipsoid]:
        """(left, right): the painting order."""
        return self.left, self.right


@dataclass(frozen=True)
class Liver:
    """Right and left lobes (axis-aligned ellipsoids; the left one moved to meet the right in a wide bridge) and the
    vessels inside the liver (portal branches from the hilum, hepatic veins to the IVC)."""

    right_lobe: Ellipsoid
    left_lobe: Ellipsoid
    vessels: tuple[Tube, ...]


@dataclass(frozen=True)
class Pancreas:
    """One connected organ along a centre line of five points (head, neck, body, body, tail) with their radii (mm).

    level_z: z (mm) of the neck, the level that the gut and the portal hilum are placed from.
    """

    centre_line: Tube
    level_z: float


@dataclass(frozen=True)
class Vessels:
    """The great vessels and the portal system, each a tube round its centre line (mm).

    iliac_arteries: from the aortic bifurcation (version 3: none; its pelvis draws them).
    """

    aorta: Tube
    ivc: Tube
    iliac_arteries: tuple[Tube, ...]
    sma: Tube
    portal_vein: Tube
    splenic_vein: Tube


@dataclass(frozen=True)
class Antrum:
    """The gastric antrum and pylorus (version 3): a tube from the stomach's body to the duodenal bulb; lumen: the
    share of the radius that holds gastric content (0: collapsed, all wall)."""

    tube: Tube
    lumen: float


@dataclass(frozen=True)
class Stomach:
    """The stomach's body (an ellipsoid with a wall 5 mm thick) with an air-fluid level.

    air_level: gas fills the lumen in front of centre_y - air_level * axes[1] (air rises anteriorly in a supine
    patient); content: the lumen's tissue id; antrum: version 3's antrum (None in version 2).
    """

    body: Ellipsoid
    air_level: float
    content: int = T["gastric_fluid"]
    antrum: Antrum | None = None


@dataclass(frozen=True)
class Bowel:
    """Duodenum and colon (tubes), the small bowel's loops and what the bowel holds.

    colon_content: tissue id of the colon's content; small_bowel_top_z: the loops lie below this z (mm);
    small_bowel_rr: (wall, lumen) thresholds of f1^2 + f2^2 of the two bowel fields (abdomen_paint.paint_small_bowel);
    oral_contrast: positive oral contrast fills the small bowel and duodenum; gas_threshold: gas where the fine
    texture field exceeds it (colon: 0.8 lower).
    """

    duodenum: Tube
    colon: Tube
    small_bowel_top_z: float
    oral_contrast: bool
    gas_threshold: float
    colon_content: int = T["stool"]
    small_bowel_rr: tuple[float, float] = (0.8, 0.45)


@dataclass(frozen=True)
class Rib:
    """One rib: z (mm) where it leaves the spine, how far (mm) it descends toward the front, and the angle (degrees,
    0 posterior midline, 180 anterior midline) where it ends (with costal cartilage over its last 35 degrees when
    the end lies beyond 140)."""

    z_back: float
    drop: float
    end_deg: float


@dataclass(frozen=True)
class Ribs:
    """Ribs 12, 11, ... upwards, of radial half-thickness and vertical half-height (mm), inside the wall muscle."""

    ribs: tuple[Rib, ...]
    half_thickness: float
    half_height: float


@dataclass(frozen=True)
class Table:
    """The scanner table under the patient: gap (mm) below the back's skin, radius (mm) of its upward curve."""

    gap: float
    radius: float


@dataclass(frozen=True)
class Anatomy:
    """One patient of version 2: body habitus, organ positions, sizes and orientations.

    gallbladder and bladder may be None (absent); iliac_wings: version 2's two ellipsoids (version 3: none, its
    pelvis holds them).
    """

    body: Body
    spine: Spine
    diaphragm: Diaphragm
    kidneys: Kidneys
    liver: Liver
    spleen: Ellipsoid
    pancreas: Pancreas
    vessels: Vessels
    gallbladder: Ellipsoid | None
    stomach: Stomach
    bowel: Bowel
    bladder: Ellipsoid | None
    iliac_wings: tuple[Ellipsoid, ...]
    heart: Ellipsoid
    ribs: Ribs
    table: Table
